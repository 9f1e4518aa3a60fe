"""kubepedia: kubepedia."""
