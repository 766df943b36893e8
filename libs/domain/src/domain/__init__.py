"""The LLM Server domain: chat turns, key policy, costing, budgets and history.

The core (this package minus ``domain.adapters``) is pure: standard library only, so the
rules can be read and tested without a framework, a database or a network.
"""
