"""The admin API (``/admin/v1``): the console's reads and the operator's key management."""
