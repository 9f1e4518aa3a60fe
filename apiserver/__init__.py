"""kubepedia: apiserver."""
