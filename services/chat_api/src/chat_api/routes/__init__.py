"""HTTP routes: each names its dialect and use case and hands the request to the Gateway;
ops.py serves health, readiness and metrics."""
