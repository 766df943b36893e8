"""Read models: what the operator console, the admin API and ``/metrics`` show, one module per
screen.

Plain synchronous functions over an ``Engine``: the caller runs them in its database thread
pool. Every query is bounded by an index (a time range, a key, a conversation) and returns
aggregates or one page, never a whole table. Money stays integer nano-USD and times stay
``datetime``: formatting (JSON, CSV, USD/KRW text) belongs to the service that renders them.
Days and months are those of the budget time zone (``domain.periods``), like budget periods.

- ``shared``: filters, totals and SQL helpers several screens use
- ``overview``: today, this month, top models and clients, spend per day
- ``spend``: ledger totals grouped by day, model, key source or client key
- ``pii``: personal data the guard found, per kind and per client key
- ``conversations``: conversation pages and one conversation's turns
- ``keys``: client keys with what each spent and holds today and this month, and their last use
- ``request_log``: request log pages, the "now" window (last minutes by status, latency and
  TTFT percentiles) and the last hours in buckets for the Overview's charts
- ``exports``: ledger and request-log rows in keyset-paginated batches, for the CSV exports
- ``audit``, ``alerts``: operator actions and raised alerts
- ``business_metrics``: the business figures behind the monitor's ``/metrics``
"""
