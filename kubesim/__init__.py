"""kubepedia: kubesim."""
