"""kubepedia: tests."""
