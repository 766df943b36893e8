"""Secrets never reach a log line: a filter on every handler redacts them at the sink."""
from __future__ import annotations

import logging
import re

_PATTERNS = [
    (re.compile(r"(?i)(authorization|x-openai-api-key|openai_api_key|api[_-]?key)([\"']?\s*[:=]\s*[\"']?)"
                r"(bearer\s+)?[^\s\"',}]+"), r"\1\2\3[REDACTED]"),
    (re.compile(r"sk-[A-Za-z0-9_\-]{6,}"), "sk-[REDACTED]"),
    (re.compile(r"llms-[A-Za-z0-9_\-]{6,}"), "llms-[REDACTED]"),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9_\-\.]{8,}"), "Bearer [REDACTED]"),
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


def install_redaction() -> None:
    """Adds the filter to every handler of the root and uvicorn loggers (idempotent)."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "chat_api", "domain"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
