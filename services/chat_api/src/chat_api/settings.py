"""Configuration from the environment (and .env). Read once, in the composition root."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.key_policy import header_safe
from domain.periods import budget_timezone
from domain.pii import PiiPolicy

_PLACEHOLDERS = {"your_api_key_here", "changeme", "change-me", "sk-your-api-key", "secret"}


class ChatApiSettings(BaseSettings):
    # hide_input_in_errors: a refused secret must not be printed in the startup error
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    database_url: str | None = None
    openai_api_key: str | None = Field(default=None, repr=False)
    openai_base_url: str = "https://api.openai.com/v1"
    chat_api_host: str = "127.0.0.1"
    chat_api_port: int = 8001
    log_level: str = "INFO"
    usd_krw_rate: Decimal = Decimal("1400")
    # HMAC secret for client-key hashes; the admin token guards /admin/v1. Both are generated
    # into ./data/ on first start when unset, so `make dev` works with no configuration.
    key_hash_secret: str | None = Field(default=None, repr=False)
    admin_token: str | None = Field(default=None, repr=False)
    data_dir: Path = Path("data")
    price_catalog_path: str | None = None
    extra_models: str = ""  # comma-separated unpriced models the operator allows (e.g. fine-tunes)
    allow_anonymous: bool = False
    # The original dialect (/api/v1/chat*) without a client key, on the anonymous budget and
    # rate-limited per address: existing clients of the original server keep working.
    allow_anonymous_original: bool = False
    anonymous_daily_usd: Decimal | None = Decimal("1")
    anonymous_monthly_usd: Decimal | None = Decimal("10")
    global_daily_usd: Decimal | None = None
    global_monthly_usd: Decimal | None = None
    history_token_budget: int = 3000
    history_max_turns: int = Field(default=50, ge=1)  # at most this many stored turns replayed
    upstream_timeout_seconds: float = 60.0
    upstream_max_retries: int = 2
    # Upstream connections per replica, and the share of them one client may hold at once
    # (streams included); over it: 429 too_many_concurrent_requests. 1 turns the rule off.
    upstream_max_connections: int = Field(default=200, ge=1)
    upstream_client_share: float = Field(default=0.25, gt=0)
    # The circuit breaker (domain.upstream_guard): a client's own circuit opens after
    # CIRCUIT_THRESHOLD consecutive failures; the upstream key's shared one only when that
    # many failures come from at least CIRCUIT_MIN_CLIENTS distinct clients.
    circuit_threshold: int = Field(default=5, ge=1)
    circuit_cooldown_seconds: float = Field(default=30.0, gt=0)
    circuit_min_clients: int = Field(default=2, ge=1)
    max_body_bytes: int = 1_000_000
    max_messages: int = 500
    max_prompt_chars: int = 200_000
    rate_limit_per_minute: int = 600  # requests per client key per minute (per replica); 0 disables
    tokens_per_minute: int = 2_000_000  # estimated prompt + max output tokens per key per minute; 0 disables
    max_concurrent_streams: int = 20  # per client key
    auth_cache_seconds: float = 5.0
    reply_language_policy: bool = False  # keep answers in Korean for Korean prompts
    # Personal data in what leaves the gateway: off | mask (placeholders) | block (400 pii_detected).
    pii_policy: PiiPolicy = PiiPolicy.MASK
    ledger_spool_path: Path | None = None  # the local SQLite spool (default: DATA_DIR/ledger-spool.sqlite3)
    # A budget hold older than this whose replica never settled it (the replica died)
    # becomes a ledger row charged at the held amount. Far above the upstream timeout.
    stale_hold_seconds: float = Field(default=900.0, gt=0)
    # An Idempotency-Key still in progress after this long counts as failed (its request
    # died with its replica) and may be retried.
    idempotency_pending_seconds: float = Field(default=120.0, gt=0)
    # First look at a background response after this long; then doubling, capped at 60 s.
    background_poll_seconds: float = Field(default=2.0, gt=0)
    # Budget days and months roll over at local midnight of this zone; "today" means it too.
    budget_timezone: str = "Asia/Seoul"
    # Operator alerts (Slack-compatible webhook); unset: alerts are only listed in the console.
    alert_webhook_url: str | None = Field(default=None, repr=False)
    alert_budget_pct: Decimal = Field(default=Decimal(80), gt=0, le=1000)
    alert_error_rate: float = Field(default=0.2, ge=0, le=1)
    alert_check_seconds: float = Field(default=30.0, gt=0)

    @field_validator("budget_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Seoul)") from None
        return value.strip()

    @property
    def tz(self) -> ZoneInfo:
        return budget_timezone(self.budget_timezone)

    upstreams_file: Path | None = None  # YAML list of upstreams (DESIGN.md "Upstream routing")
    models_cache_seconds: float = 300.0  # how long /v1/models keeps the upstream's list
    # Browser origins allowed to call the API (comma-separated, each echoed exactly; empty: no CORS).
    cors_allow_origins: str = ""

    @field_validator("openai_api_key", "admin_token", "key_hash_secret")
    @classmethod
    def _reject_placeholders(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower() in _PLACEHOLDERS:
            raise ValueError("a placeholder is not a secret: set a real value or leave it unset")
        return value or None

    @field_validator("openai_api_key")
    @classmethod
    def _key_fits_a_header(cls, value: str | None) -> str | None:
        # A key read with `$(cat file)` or pasted may end in a newline: surrounding whitespace
        # goes; anything left that a header cannot carry is refused at start, not per request.
        value = value.strip() if value else value
        if value and not header_safe(value):
            raise ValueError("the key holds a space, a control character or a non-ASCII character, "
                             "which an HTTP header cannot carry")
        return value or None

    @field_validator("pii_policy", mode="before")
    @classmethod
    def _policy_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def secret_file(self, name: str) -> Path:
        return self.data_dir / name

