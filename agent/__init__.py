"""kubepedia: agent."""
