"""Use cases: one verb-noun class each, with a single ``execute``."""
