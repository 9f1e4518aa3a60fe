"""The vocabulary every room shares: resource types, object pruning, selectors, Status bodies,
Table printers.

This package imports nothing of the project, and every room may import it.
"""
