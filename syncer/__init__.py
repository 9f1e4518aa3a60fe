"""kubepedia: syncer."""
