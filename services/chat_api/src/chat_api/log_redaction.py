"""chat_api's logging: the shared redacting setup (``domain.adapters.log_redaction``)."""
from __future__ import annotations

from domain.adapters.log_redaction import RedactingFilter, install_redaction, logging_config, redact

__all__ = ["RedactingFilter", "install_redaction", "logging_config", "redact"]
