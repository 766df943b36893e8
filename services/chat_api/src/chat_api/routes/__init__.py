"""HTTP routes, one module per dialect plus operations."""
