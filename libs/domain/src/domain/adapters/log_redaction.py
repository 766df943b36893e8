"""Secrets never reach a log line: a filter on every handler redacts them at the sink.

Every service's process logs through one handler on the root logger (``logging_config``,
given to uvicorn by chat_api and monitor), so a record
from any logger — ours, uvicorn's, a library's — passes the filter; nothing falls through to
Python's unfiltered last-resort handler.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import Any

_PATTERNS = [
    (re.compile(r"(?i)(authorization|x-openai-api-key|openai_api_key|api[_-]?key)([\"']?\s*[:=]\s*[\"']?)"
                r"(bearer\s+)?[^\s\"',}]+"), r"\1\2\3[REDACTED]"),
    (re.compile(r"sk-[A-Za-z0-9_\-]{6,}"), "sk-[REDACTED]"),
    (re.compile(r"llms-[A-Za-z0-9_\-]{6,}"), "llms-[REDACTED]"),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9_\-\.]{8,}"), "Bearer [REDACTED]"),
    # a password inside a URL (DATABASE_URL in a driver's error message)
    (re.compile(r"\b([a-z][a-z0-9+.\-]*://[^:/\s@]+:)[^@\s/]+@"), r"\1[REDACTED]@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_OWN_LOGGERS = ("chat_api", "monitor", "domain", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """The process's logging (``logging.config.dictConfig`` shape, as uvicorn takes it): one
    redacting stderr handler on the root; our loggers and uvicorn's at ``level`` and
    propagating to it; libraries at WARNING (their DEBUG output quotes request headers)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactingFilter}},
        "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "line", "filters": ["redact"]}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {name: {"level": level, "handlers": [], "propagate": True} for name in _OWN_LOGGERS},
    }


def install_redaction() -> None:
    """Adds the filter to every handler of the root and uvicorn loggers (idempotent), and
    gives the root a redacting handler when it has none (an app served without
    ``logging_config``), so no record reaches the unfiltered last-resort handler."""
    root = logging.getLogger()
    if not root.handlers:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stderr)
    for name in ("", *_OWN_LOGGERS):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
