"""kubepedia: benchmarks."""
