"""HandlePassThrough: the OpenAI endpoints answered by the upstream as they are
(embeddings, moderations), metered and recorded like a chat turn, without history."""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any

from domain.budgets import HoldTag, Reservation, budget_lines, capped
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.errors import InvalidInput, ServiceUnavailable, UpstreamError
from domain.key_policy import DefaultKeyPolicy, FallbackReason, KeyChoice, KeySource
from domain.ledger import Outcome, UsageRecord
from domain.model_catalog import ModelCatalog
from domain.money import Money
from domain.periods import KST
from domain.pii import PiiPolicy, PiiScanner
from domain.pii.messages import map_input, texts_of_input
from domain.ports import BudgetStore, Clock, LlmProvider, SpendLedger, UpstreamApi, UpstreamReply, UpstreamRequest
from domain.usage import TokenUsage


@dataclass(slots=True)
class PassThroughCommand:
    """One request for ``api`` (embeddings or moderations): ``params`` is the body as sent
    (``input``, ``dimensions``, ...) and ``input_tokens`` the dialect's estimate of its
    input, for the budget hold. ``pii`` is this request's personal-data scanner (the key's
    policy, else the server's)."""

    request_id: str
    client: ClientIdentity
    api: UpstreamApi
    model: str
    route: str
    params: dict[str, Any]
    input_tokens: int
    pii: PiiScanner
    use_user_key: bool = False
    user_api_key: str | None = None
    retries: bool = True

    def token_allowance(self) -> int:
        """What it counts against the per-minute token allowance: its input."""
        return self.input_tokens

    def __repr__(self) -> str:  # never print the caller's key
        return f"PassThroughCommand(request_id={self.request_id!r}, model={self.model!r}, route={self.route!r})"


@dataclass(frozen=True, slots=True)
class PassThroughResult:
    reply: UpstreamReply
    usage: TokenUsage
    cost: Money | None
    key_source: KeySource
    fallback_reason: FallbackReason | None
    model: str

    @property
    def upstream_seconds(self) -> float | None:
        return self.reply.upstream_seconds

    @property
    def upstream(self) -> str | None:
        return self.reply.upstream

    @property
    def upstream_headers(self) -> Mapping[str, str]:
        return self.reply.headers


@dataclass(frozen=True, slots=True)
class PassThroughSettings:
    global_limits: BudgetLimits = field(default_factory=BudgetLimits)
    tz: tzinfo = KST  # BUDGET_TIMEZONE: budget days and months are local ones


class HandlePassThrough:
    """The rules of an embeddings or moderations request:

    * embeddings: the model must be allowed and priced (input tokens at the catalogue's
      input price, nothing for output); a server-key request reserves the cost of its
      estimated input in every budget line before the upstream is called, and is refused
      there when a line would overflow;
    * moderations are free at OpenAI: any model name is passed on, nothing is reserved, and
      the ledger row costs 0;
    * the ``input`` passes the request's personal-data scanner before anything else: under
      ``mask`` the upstream gets placeholders, under ``block`` the request is refused
      (``pii_detected``) before any hold is taken or byte sent, so nothing is stored or
      charged; the counts per kind go on the request's ledger row (one row: a refused
      own-key attempt that fell back carries none);
    * the key policy picks whose key pays, with the same fallback to the server key as a
      chat turn when the caller's own key is refused;
    * every request that reached the upstream leaves one ledger row (failures included).
    """

    def __init__(self, *, provider: LlmProvider, ledger: SpendLedger, budgets: BudgetStore, models: ModelCatalog,
                 policy: DefaultKeyPolicy, clock: Clock, settings: PassThroughSettings = PassThroughSettings()) -> None:
        self._provider, self._ledger, self._budgets = provider, ledger, budgets
        self._models, self._policy, self._clock, self._settings = models, policy, clock, settings

    def _priced(self, cmd: PassThroughCommand) -> bool:
        return cmd.api is not UpstreamApi.MODERATIONS

    @staticmethod
    def _guarded(cmd: PassThroughCommand) -> PassThroughCommand:
        """The command as it may leave the gateway: every text of its ``input`` (a string,
        strings, moderation parts' ``text``) through the scanner. Token arrays (embeddings'
        lists of integers) pass as they are: the guard cannot read text in token ids, and
        decoding them would need the model's tokenizer. Refused under ``block``."""
        scanner = cmd.pii
        if scanner.policy is PiiPolicy.OFF or "input" not in cmd.params:
            return cmd
        value = cmd.params["input"]
        scanner.reserve_all(texts_of_input(value))
        masked = map_input(value, scanner.process)
        scanner.raise_if_blocked()
        return replace(cmd, params={**cmd.params, "input": masked})

    def _check_model(self, cmd: PassThroughCommand) -> None:
        if not self._priced(cmd):
            return
        if not self._models.allows(cmd.model):
            raise InvalidInput("unknown_model", field="model", model=cmd.model)

    async def _admit(self, cmd: PassThroughCommand, choice: KeyChoice) -> Reservation | None:
        """Holds the estimated input's cost on every budget line of a server-key request
        (refused when one would overflow). Every call, budgeted or not, takes a hold: it is
        the request's write-ahead record (see HoldTag), so a replica dying before the row
        is stored leaves an orphaned row charged at the hold, never nothing."""
        tag = HoldTag(cmd.request_id, cmd.client.key_id, cmd.route, cmd.model, self._models.version, choice.source)
        if choice.source is KeySource.USER or not self._priced(cmd):
            return await self._write_ahead(tag, Money.zero())
        price = self._models.worst_price_of(cmd.model)  # the dearest upstream that may serve it
        budgeted = cmd.client.limits.applies or self._settings.global_limits.applies
        if price is None:
            if budgeted:
                raise InvalidInput("unpriced_model", field="model", model=cmd.model)
            return await self._write_ahead(tag, Money.zero())
        lines = capped(budget_lines(cmd.client.budget_scope, cmd.client.limits, self._settings.global_limits,
                                    self._clock.now(), self._settings.tz))
        worst = price.worst_case(cmd.input_tokens, 0)
        return await self._budgets.reserve(lines, worst, tag) if lines else await self._write_ahead(tag, worst)

    async def _write_ahead(self, tag: HoldTag, amount: Money) -> Reservation | None:
        """A hold on no counter: the write-ahead record alone. Best effort, as for a chat
        turn: with the database away the request goes on (its row is spooled)."""
        try:
            return await self._budgets.reserve((), amount, tag)
        except ServiceUnavailable:
            return None

    def _cost(self, cmd: PassThroughCommand, model: str, usage: TokenUsage, upstream: str | None) -> Money | None:
        """At the price where the request was served (the catalogue may override it per upstream)."""
        if not self._priced(cmd):
            return Money.zero()
        price = self._models.price_of(model, upstream) or self._models.price_of(cmd.model, upstream)
        return None if price is None else price.cost(usage)

    def _record(self, cmd: PassThroughCommand, choice: KeyChoice, started: float, reservation: Reservation | None,
                *, model: str, usage: TokenUsage, cost: Money | None, request_id: str | None = None,
                error: UpstreamError | None = None, reply: UpstreamReply | None = None,
                pii_counted: bool = True) -> None:
        """``pii_counted`` False for the refused own-key attempt of a fallback: the request's
        personal-data counts go on one row only, so sums over the ledger count each value once.
        A failed call is free, unless the upstream may have billed it (an unreadable answer, no
        answer in time to a request it had): the row is charged its hold (estimated), as a chat
        turn's is."""
        served = reply or error
        billed = error is not None and error.may_be_billed and reservation is not None
        if billed and reservation is not None:
            cost = reservation.amount
        self._ledger.submit(UsageRecord(
            request_id=request_id or cmd.request_id, created_at=self._clock.now(), client_key_id=cmd.client.key_id,
            budget_key_id=cmd.client.budget_key_id, route=cmd.route, model=model, usage=usage, cost=cost, catalog_version=self._models.version,
            key_source=choice.source, outcome=Outcome.ERROR if error else Outcome.OK, estimated=billed,
            latency_ms=int((self._clock.monotonic() - started) * 1000), fallback_reason=choice.fallback_reason,
            reservation=reservation, error_code=error.code if error else None,
            upstream=served.upstream if served else None, upstream_attempts=served.attempts if served else 1,
            pii_counts={kind.value: n for kind, n in cmd.pii.counts.items()} if pii_counted else {}))

    async def execute(self, cmd: PassThroughCommand) -> PassThroughResult:
        started = self._clock.monotonic()
        self._check_model(cmd)
        cmd = self._guarded(cmd)
        choice = self._policy.choose(use_user_key=cmd.use_user_key, user_key=cmd.user_api_key,
                                     may_use_server_key=cmd.client.may_use_server_key)
        reservation = await self._admit(cmd, choice)
        request = UpstreamRequest(cmd.api, cmd.model, [], cmd.params, client=cmd.client.key_id, retries=cmd.retries)
        try:
            reply = await self._provider.complete(request, choice.api_key)
        except UpstreamError as error:
            own_key = choice.source is KeySource.USER
            fallback: KeyChoice | None = None  # None: this attempt's row is the request's only one
            if own_key:
                with contextlib.suppress(UpstreamError):  # raised: not a refusal the server key takes over
                    fallback = self._policy.fallback(error, may_use_server_key=cmd.client.may_use_server_key)
            # A refused own-key attempt keeps its row under "<id>:user"; it carries the PII
            # counts only when no server-key attempt follows (each value counted once).
            self._record(cmd, choice, started, reservation, model=cmd.model, usage=TokenUsage(), cost=Money.zero(),
                         request_id=cmd.request_id + (":user" if own_key else ""),
                         error=error, pii_counted=fallback is None)
            if fallback is None:
                raise error
            choice = fallback
            reservation = await self._admit(cmd, choice)
            try:
                reply = await self._provider.complete(request, choice.api_key)
            except UpstreamError as second:
                self._record(cmd, choice, started, reservation, model=cmd.model, usage=TokenUsage(),
                             cost=Money.zero(), error=second)
                raise
        model = reply.model or cmd.model
        cost = self._cost(cmd, model, reply.usage, reply.upstream)
        self._record(cmd, choice, started, reservation, model=model, usage=reply.usage, cost=cost, reply=reply)
        return PassThroughResult(reply, reply.usage, cost, choice.source, choice.fallback_reason, model)
