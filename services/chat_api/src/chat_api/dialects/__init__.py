"""Dialects: the request and answer shapes of each endpoint (parse → command, render result,
stream event, error). The sequence around them is the Gateway's (gateway.py)."""
