"""What a dialect is: the request and answer shapes of one endpoint, and nothing else.

A dialect parses a request into a command for a use case and renders what comes back (a
result, a stream event, an error). The sequence around it — authentication, limits,
idempotency, the use case, metrics, headers, the stream relay — is the ``Gateway``'s, the
same for every dialect. A new endpoint is a new ``Dialect`` plus the use case it feeds.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from fastapi.responses import Response
from typing_extensions import TypeIs

from domain.client_keys import ClientIdentity
from domain.errors import DomainError
from domain.key_policy import FallbackReason, KeySource
from domain.money import Money
from domain.pii import PiiScanner
from domain.ports import StreamData
from domain.usage import TokenUsage
from domain.use_cases.chat_turn import StreamOpened

Cmd = TypeVar("Cmd")
Res = TypeVar("Res")
Cmd_contra = TypeVar("Cmd_contra", contravariant=True)
Res_co = TypeVar("Res_co", covariant=True)


@dataclass(frozen=True, slots=True)
class DialectSettings:
    """The operator's settings a dialect reads while parsing and rendering."""

    max_prompt_chars: int = 200_000
    max_messages: int = 500
    reply_language_policy: bool = False
    usd_krw_rate: Decimal = Decimal("1400")


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated HTTP request as a dialect sees it, besides its body."""

    route: str
    client: ClientIdentity
    lang: str
    started: float  # perf_counter() when the request arrived
    headers: Mapping[str, str]
    path_params: Mapping[str, str]
    settings: DialectSettings
    pii: PiiScanner  # this request's personal-data scanner (the key's policy, else the server's)
    query: Mapping[str, str] | None = None
    address: str | None = None  # the caller's address (behind nginx: the forwarded one)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a dialect may use to render an error: the request may have failed before it
    was authenticated, or before its body was read (``body`` None)."""

    lang: str
    started: float
    body: Mapping[str, Any] | None


class UseCase(Protocol[Cmd_contra, Res_co]):
    async def execute(self, command: Cmd_contra) -> Res_co: ...


@runtime_checkable
class Validating(Protocol[Cmd_contra]):
    """A use case that can refuse a command without I/O, before any allowance is spent on it."""

    def validate(self, command: Cmd_contra) -> object: ...


@runtime_checkable
class Metered(Protocol):
    """A result that used the upstream: counted in the metrics and described in headers."""

    @property
    def model(self) -> str: ...

    @property
    def usage(self) -> TokenUsage: ...

    @property
    def cost(self) -> Money | None: ...

    @property
    def key_source(self) -> KeySource: ...

    @property
    def fallback_reason(self) -> FallbackReason | None: ...

    @property
    def upstream_seconds(self) -> float | None: ...

    @property
    def upstream(self) -> str | None: ...  # the name of the upstream that served it


@runtime_checkable
class TokenMetered(Protocol):
    """A command that counts against the per-minute token allowance."""

    client: ClientIdentity

    def token_allowance(self) -> int: ...


@runtime_checkable
class Relayed(Protocol):
    """A result that carries upstream response headers for the client (``x-request-id``,
    ``openai-processing-ms``, ``x-ratelimit-*``)."""

    @property
    def upstream_headers(self) -> Mapping[str, str]: ...


@runtime_checkable
class StreamingUseCase(UseCase[Cmd_contra, Res_co], Protocol[Cmd_contra, Res_co]):
    """A use case that can also answer as a stream: ``StreamOpened``, events, then one result."""

    def stream(self, command: Cmd_contra) -> AsyncGenerator[StreamOpened | StreamData | Res_co, None]: ...


_CONFORMS: dict[tuple[type, type], bool] = {}


def _conforms(obj: object, protocol: type) -> bool:
    """``isinstance(obj, protocol)`` for the runtime-checkable protocols above, answered once
    per class: the structural check looks up every member of the protocol on each call, and
    the pipeline asks several times per request (and once per streamed event). The classes
    asked about declare their members (dataclass fields, methods), so the answer is the
    class's."""
    key = (type(obj), protocol)
    known = _CONFORMS.get(key)
    if known is None:
        known = _CONFORMS[key] = isinstance(obj, protocol)
    return known


def is_metered(obj: object) -> TypeIs[Metered]:
    return _conforms(obj, Metered)


def is_relayed(obj: object) -> TypeIs[Relayed]:
    return _conforms(obj, Relayed)


def is_token_metered(obj: object) -> TypeIs[TokenMetered]:
    return _conforms(obj, TokenMetered)


def is_validating(obj: object) -> TypeIs[Validating[Any]]:
    return _conforms(obj, Validating)


def is_streaming(obj: object) -> TypeIs[StreamingUseCase[Any, Any]]:
    return _conforms(obj, StreamingUseCase)


class Dialect(ABC, Generic[Cmd, Res]):
    """The shapes of one endpoint. ``route`` is its metric label; ``reads_body`` False for
    endpoints without one (GET by id); ``idempotent`` when the Idempotency-Key header is
    honoured (non-streamed answers only); ``keyless`` when the operator may let callers
    without a client key in (ALLOW_ANONYMOUS_ORIGINAL: the original dialect)."""

    route: str
    reads_body: bool = True
    idempotent: bool = False
    keyless: bool = False

    @abstractmethod
    def parse(self, body: dict[str, Any], call: Call) -> Cmd:
        """The use case's command, or ``InvalidInput`` naming the offending field."""

    def wants_stream(self, body: Mapping[str, Any]) -> bool:
        return False

    def model_of(self, command: Cmd) -> str | None:
        """The requested model, for the metrics of a request that fails."""
        return None

    @abstractmethod
    def render(self, result: Res, command: Cmd, call: Call) -> Response: ...

    def render_event(self, event: StreamData | Res, command: Cmd, call: Call) -> bytes | None:
        """One stream event as bytes to send, or None to skip it."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def render_stream_error(self, error: DomainError, command: Cmd, call: Call) -> bytes:
        """An error after the stream's first byte: the HTTP status is already sent."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    @abstractmethod
    def render_error(self, error: DomainError, failure: Failure) -> Response: ...
