"""The monitor service: psutil host metrics, the original ``/api/v1/system/*`` routes, and a
Prometheus ``/metrics`` endpoint with host, stack-process and business (spend) metrics."""
