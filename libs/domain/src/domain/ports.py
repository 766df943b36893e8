"""The core's ports: what the use cases need from the outside world, named by role.

Adapters in ``domain.adapters`` implement them (``<Tech><Port>``); in-memory fakes implement
them for unit tests.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from domain.budgets import BudgetLine, HoldTag, Reservation
from domain.client_keys import BudgetLimits, ClientKey
from domain.conversations import Turn
from domain.ledger import UsageRecord
from domain.money import Money
from domain.pii import PiiPolicy
from domain.pricing import ModelPrice
from domain.request_log import RequestLogEntry
from domain.usage import TokenUsage


class UpstreamApi(StrEnum):
    RESPONSES = "responses"
    CHAT_COMPLETIONS = "chat.completions"
    EMBEDDINGS = "embeddings"
    MODERATIONS = "moderations"


# The upstream's response headers a client gets as OpenAI sent them: the request id, the
# processing time and the rate-limit state (``x-ratelimit-*``).
PASSED_THROUGH_HEADERS = ("x-request-id", "openai-processing-ms")
RATE_LIMIT_HEADER_PREFIX = "x-ratelimit-"


def passed_through(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The subset of an upstream answer's headers that is relayed to the client."""
    return {k.lower(): v for k, v in headers
            if k.lower() in PASSED_THROUGH_HEADERS or k.lower().startswith(RATE_LIMIT_HEADER_PREFIX)}


@dataclass(slots=True)
class UpstreamRequest:
    """What to send upstream. ``messages`` become ``input`` (Responses) or ``messages`` (Chat
    Completions); ``params`` are passed through as given (temperature, tools, ...; the
    ``input`` of embeddings and moderations). ``client`` (the client key's id; None for
    anonymous callers) is never sent: the provider uses it to keep one client's failures and
    parallel calls from costing the others. ``retries`` False: the client is retrying
    itself, so the provider makes one attempt (one client call stays within the client's
    own retry count of upstream attempts)."""

    api: UpstreamApi
    model: str
    messages: list[Any]
    params: dict[str, Any] = field(default_factory=dict)
    client: str | None = None
    retries: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    body: dict[str, Any]
    model: str
    text: str
    usage: TokenUsage
    upstream_seconds: float = 0.0  # time spent waiting for the upstream, retries included
    headers: Mapping[str, str] = field(default_factory=dict)  # ``passed_through`` headers
    upstream: str | None = None  # the name of the upstream that answered (routing)
    attempts: int = 1  # upstream calls it took, failovers and retries included


@dataclass(frozen=True, slots=True)
class StreamData:
    """One upstream SSE event, as raw bytes to relay. ``usage_only`` marks the usage chunk the
    gateway asked for on the client's behalf (relayed only if the client asked too);
    ``final`` the stream's closing event (``data: [DONE]``, ``response.completed``), held
    back until the turn is stored; ``headers`` (first event only) the upstream's
    ``passed_through`` response headers."""

    raw: bytes
    text_delta: str = ""
    usage_only: bool = False
    final: bool = False
    headers: Mapping[str, str] | None = None
    upstream: str | None = None  # on the first event: the upstream serving the stream (routing)
    attempts: int = 1  # on the first event: upstream calls it took to open the stream


@dataclass(frozen=True, slots=True)
class StreamDone:
    usage: TokenUsage | None
    model: str
    response_id: str | None = None
    upstream: str | None = None  # the name of the upstream that served the stream (routing)
    attempts: int = 1


class LlmProvider(Protocol):
    """An OpenAI-compatible upstream. Raises ``UpstreamError`` (with the upstream status and
    code) for refusals and ``UpstreamTimeout`` when it does not answer in time. Retries, if
    any, happen here and only here, and never after the first streamed byte."""

    async def complete(self, request: UpstreamRequest, api_key: str) -> UpstreamReply: ...

    def stream(self, request: UpstreamRequest, api_key: str) -> AsyncIterator[StreamData | StreamDone]: ...

    async def get_response(self, response_id: str, api_key: str) -> dict[str, Any]: ...

    async def cancel_response(self, response_id: str, api_key: str) -> dict[str, Any]: ...

    async def delete_response(self, response_id: str, api_key: str) -> dict[str, Any]: ...

    async def response_input_items(self, response_id: str, api_key: str,
                                   query: Mapping[str, str]) -> dict[str, Any]: ...

    async def list_models(self, api_key: str) -> list[str]:
        """The ids of the models the upstream serves."""

    async def aclose(self) -> None:
        """Closes its connections (at shutdown)."""


class ConversationRepository(Protocol):
    """Stored turns, scoped by owner (``ClientIdentity.owner``: the key's rotation chain): a
    client never reads another client's conversation, and a rotated key continues its own."""

    async def recent_turns(self, owner: str | None, conversation_id: str, limit: int) -> Sequence[Turn]: ...


class SpendLedger(Protocol):
    """Every request's usage and cost. Storing a record settles its reservation and stores
    its turn atomically; a record is stored at most once per ``request_id``."""

    def submit(self, record: UsageRecord) -> None:
        """Hand over a record without waiting (safe inside a cancelled task); it is stored
        later, or spooled while the database is away, never dropped."""

    async def record(self, record: UsageRecord) -> int | None:
        """Store now; returns the turn's index in its conversation when it has a turn."""


class RequestLog(Protocol):
    """Every client request to a chat route, once, refusals included (see
    ``domain.request_log``). The gateway calls ``record`` exactly once per request, after
    the answer's status is known (for a stream: when it ends), whatever the outcome."""

    def record(self, entry: RequestLogEntry) -> None:
        """Hand over an entry without waiting (never blocks the request, never raises); it
        is written later in a batch."""
class BackgroundResponses(Protocol):
    """Background responses (``background: true``) the upstream accepted but has not
    finished. Their ledger row waits for the final usage and their hold stays open (it is
    not swept as stale) until then; the pending ids are durable, so a restarted replica
    goes on polling them."""

    async def track(self, record: UsageRecord, pii_policy: PiiPolicy = PiiPolicy.OFF) -> None:
        """Keep ``record`` (its usage not known yet) until the response is terminal, with the
        request's ``pii_policy``: the reply it stores then is masked as the request's would be."""


class BudgetStore(Protocol):
    """Spend counters per scope and period. ``reserve`` is atomic across processes: it adds
    the amount to every (capped) line or to none, and refuses (``BudgetExceeded``) when a
    line would exceed its cap counting what is spent plus what is reserved. Settling moves
    the hold off the reservation's lines; the actual charge is counted on the record's
    ``spend_lines`` (all of them, capped or not).

    A hold is the request's write-ahead record (``tag`` says whose request it is): a hold
    nobody settled within ``STALE_HOLD_SECONDS`` (its replica died) becomes the request's
    ledger row, charged at the held amount — never released for free."""

    async def reserve(self, lines: Sequence[BudgetLine], amount: Money, tag: HoldTag | None = None) -> Reservation: ...

    async def settle(self, reservation: Reservation, actual: Money) -> None: ...

    async def release(self, reservation: Reservation) -> None: ...

    async def spent(self, scope: str, period: str) -> Money: ...


class ClientKeyRepository(Protocol):
    async def add(self, key: ClientKey) -> None: ...

    async def by_hash(self, key_hash: str) -> ClientKey | None: ...

    async def get(self, key_id: str) -> ClientKey | None: ...

    async def list(self) -> Sequence[ClientKey]: ...

    async def revoke(self, key_id: str, at: datetime) -> bool: ...

    async def set_limits(self, key_id: str, limits: BudgetLimits) -> bool: ...

    async def set_pii_policy(self, key_id: str, policy: PiiPolicy | None) -> bool: ...

    async def set_expiry(self, key_id: str, expires_at: datetime | None) -> bool: ...


class PriceCatalog(Protocol):
    """Prices by model; snapshot names resolve to their family; unknown models are None."""

    @property
    def version(self) -> str: ...

    def price_of(self, model: str, upstream: str | None = None) -> ModelPrice | None:
        """The price at ``upstream`` when the catalogue overrides it there, else the model's."""

    def family_of(self, model: str) -> str | None: ...

    def models(self) -> Iterable[str]: ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    cpu_percent: float
    memory_percent: float
    memory_available_bytes: int


class HostMetrics(Protocol):
    """The monitor's view of the host (CPU sampled in the background, never per request)."""

    def snapshot(self) -> HostSnapshot: ...

    def info(self) -> dict[str, Any]: ...
