"""HandleChatTurn: one chat request from admission to the ledger."""
from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any, TypeVar

from domain.admission import choices, estimate_input, output_worst_case
from domain.budgets import HoldTag, Reservation, budget_lines, capped
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.conversations import Turn, trim_to_budget
from domain.errors import InvalidInput, NotFound, ServiceUnavailable, UpstreamError
from domain.key_policy import DefaultKeyPolicy, FallbackReason, KeyChoice, KeySource
from domain.ledger import Outcome, UsageRecord
from domain.model_catalog import ModelCatalog
from domain.money import Money
from domain.periods import KST
from domain.pii import PiiPolicy, PiiScanner
from domain.pii.messages import map_texts, texts_in
from domain.ports import (
    BackgroundResponses,
    BudgetStore,
    Clock,
    ConversationRepository,
    LlmProvider,
    SpendLedger,
    StreamData,
    StreamDone,
    UpstreamApi,
    UpstreamReply,
    UpstreamRequest,
)
from domain.pricing import ModelPrice
from domain.text import estimate_message_tokens, estimate_tokens
from domain.usage import TokenUsage
from domain.use_cases.stored_responses import ResponseOwnership

T = TypeVar("T")


@dataclass(slots=True)
class ChatTurnCommand:
    """A chat request in dialect-neutral form.

    ``system`` + context + ``new_messages`` is what the model sees. The context is
    ``history`` when the caller sent one; otherwise, when the request names a conversation,
    its stored turns (trimmed to the history token budget). ``pii`` is this request's
    personal-data scanner, made with the caller's policy.
    """

    request_id: str
    client: ClientIdentity
    api: UpstreamApi
    model: str
    route: str
    new_messages: list[Any]
    prompt: str  # the user's text of this turn, as stored in history
    pii: PiiScanner
    system: list[Any] = field(default_factory=list)
    history: list[Any] | None = None
    conversation_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    max_output_tokens: int | None = None
    use_user_key: bool = False
    user_api_key: str | None = None
    durable: bool = False  # store the ledger row before answering (the response will be fetched by id)
    retries: bool = True  # False when the client says it is retrying: one upstream attempt per client attempt

    def token_allowance(self) -> int:
        """What the request counts against a per-minute token allowance: the estimated
        tokens it sends plus the most it may get back."""
        sent = estimate_input([*self.system, *(self.history or []), *self.new_messages], self.params, self.model)
        return sent.tokens + (self.max_output_tokens or 0) * choices(self.params)

    def __repr__(self) -> str:  # never print the caller's key
        return f"ChatTurnCommand(request_id={self.request_id!r}, model={self.model!r}, route={self.route!r})"


@dataclass(frozen=True, slots=True)
class ChatTurnResult:
    reply: UpstreamReply | None
    usage: TokenUsage
    cost: Money | None
    key_source: KeySource
    fallback_reason: FallbackReason | None
    turn_index: int | None
    latency_ms: int
    model: str
    text: str
    estimated: bool = False
    # A stream's closing events (``data: [DONE]``, ``response.completed``), held back until
    # the turn was stored; the dialect sends them last.
    held: tuple[StreamData, ...] = ()
    upstream: str | None = None  # the name of the upstream that served the turn

    @property
    def upstream_seconds(self) -> float | None:
        return self.reply.upstream_seconds if self.reply else None

    @property
    def upstream_headers(self) -> Mapping[str, str]:
        return self.reply.headers if self.reply else {}


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The first thing a stream yields, once the upstream has answered: whose key pays and
    the upstream's relayed headers, so both go out with the response's headers."""

    key_source: KeySource
    fallback_reason: FallbackReason | None
    upstream_headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ChatSettings:
    history_token_budget: int = 3000
    history_max_turns: int = 50
    global_limits: BudgetLimits = field(default_factory=BudgetLimits)
    tz: tzinfo = KST  # BUDGET_TIMEZONE: budget days and months are local ones


# Service tiers billed at most at the catalogue's (standard) rates: "flex" costs less.
_PRICED_TIERS = frozenset({"auto", "default", "flex"})


def _unknown_model(model: str) -> InvalidInput:
    return InvalidInput("unknown_model", field="model", model=model)


def _unpriced_model(model: str) -> InvalidInput:
    return InvalidInput("unpriced_model", field="model", model=model)


class HandleChatTurn:
    """The rules of one chat turn:

    * the model must be allowed; an unpriced model may run on the caller's own key, or on
      the server key only where no budget applies;
    * the key policy picks whose key pays; server-key requests reserve their worst-case cost
      in every budget line *before* the upstream is called, and never reach it when refused;
    * when the upstream rejects the caller's key, the server key takes over if the policy
      allows it (and the budget admits it); the result says which key paid and why;
    * a request may name upstream objects (``previous_response_id``, ``conversation``) only
      if its client created them through the gateway; anonymous callers get no stored
      context at all (neither replayed history nor named objects);
    * every request that reached the upstream leaves a ledger row, settled to the actual
      cost (a stream cut short leaves an estimated row); turns of a named conversation are
      stored with their row.
    """

    def __init__(self, *, provider: LlmProvider, conversations: ConversationRepository, ledger: SpendLedger,
                 budgets: BudgetStore, models: ModelCatalog, policy: DefaultKeyPolicy, clock: Clock,
                 settings: ChatSettings = ChatSettings(), owners: ResponseOwnership | None = None,
                 background: BackgroundResponses | None = None) -> None:
        self._provider, self._conversations, self._ledger = provider, conversations, ledger
        self._owners = owners  # None: no stored object can be named (every reference is a 404)
        self._background = background
        self._budgets, self._models, self._policy, self._clock = budgets, models, policy, clock
        self._settings = settings

    # -- admission -------------------------------------------------------------------
    def check_model(self, model: str) -> ModelPrice | None:
        """The model (or, for a dated snapshot, its family) must be allowed; its price for
        admission (the dearest of the upstreams that may serve it) may be None (an
        operator-allowed model outside the catalogue)."""
        if not self._models.allows(model):
            raise _unknown_model(model)
        return self._models.worst_price_of(model)

    def validate(self, cmd: ChatTurnCommand) -> ModelPrice | None:
        """Refusals that need no I/O (model, output cap), so that an invalid request is a
        400 before it spends any per-minute allowance."""
        price = self.check_model(cmd.model)
        _check_output_cap(cmd, price)
        return price

    async def _check_references(self, cmd: ChatTurnCommand) -> int | None:
        """Objects a request names upstream (``previous_response_id``, ``conversation``) carry
        someone's context: only the client that created them through the gateway (any key of
        the creating key's rotation chain, ``ClientIdentity.owner``) may name them. For anyone else, and for anonymous callers (who cannot be told apart), they do
        not exist: 404, and nothing is sent upstream.

        Returns the context they bring, in tokens: the upstream bills it as input again, so
        admission counts it (None: not known yet, so the request cannot be estimated)."""
        context: int | None = 0
        for name in ("previous_response_id", "conversation"):
            value = cmd.params.get(name)
            if value is None:
                continue
            object_id = value.get("id") if isinstance(value, dict) else value
            if not isinstance(object_id, str) or not object_id:
                raise InvalidInput("invalid_field", field=name, reason="string")
            if cmd.client.key_id is None:
                raise NotFound("response_not_found", field=name)
            found = await self._owners.response_reference(object_id) if self._owners else None
            if found is None or found.owner != cmd.client.owner:
                raise NotFound("response_not_found", field=name)
            context = None if context is None or found.context_tokens is None else context + found.context_tokens
        return context

    async def _history(self, cmd: ChatTurnCommand) -> list[Any]:
        if cmd.client.key_id is None and cmd.history is None:
            # Anonymous callers cannot be told apart: a shared conversation id must not hand
            # one caller another's turns.
            return []
        if cmd.history is not None or not cmd.conversation_id:
            return cmd.history or []
        turns = await self._conversations.recent_turns(cmd.client.owner, cmd.conversation_id,
                                                       self._settings.history_max_turns)
        return [m for t in trim_to_budget(turns, self._settings.history_token_budget) for m in t.as_messages()]

    @staticmethod
    def _guarded(cmd: ChatTurnCommand, history: list[Any]) -> ChatTurnCommand:
        """The command as it may leave the gateway: every text it sends (instructions, system,
        the history given or replayed, the new messages and their tool results) and the prompt
        it stores passed through the request's scanner, in that order; refused under ``block``
        when anything was found, before any budget is held, any byte sent or any row stored."""
        scanner = cmd.pii
        if scanner.policy is PiiPolicy.OFF:
            return replace(cmd, history=history)
        instructions = cmd.params.get("instructions")
        parts = [cmd.system, history, cmd.new_messages]
        scanner.reserve_all([*([instructions] if isinstance(instructions, str) else []),
                             *(text for part in parts for text in texts_in(part))])
        done: dict[str, str] = {}

        def process(text: str) -> str:
            done[text] = scanner.process(text)
            return done[text]

        params = cmd.params
        if isinstance(instructions, str):
            params = {**params, "instructions": process(instructions)}
        system, history, new = (map_texts(part, process) for part in parts)
        scanner.raise_if_blocked()
        # The stored prompt is the last user message again: the same text is not scanned (or
        # counted) twice; a prompt that differs gets the same placeholders, uncounted.
        prompt = done.get(cmd.prompt)
        return replace(cmd, system=system, history=history, new_messages=new, params=params,
                       prompt=prompt if prompt is not None else scanner.process(cmd.prompt, counted=False))

    async def _admit(self, cmd: ChatTurnCommand, choice: KeyChoice, price: ModelPrice | None,
                     messages: list[Any], chained: int | None = 0) -> Reservation | None:
        """``chained``: the tokens of the stored context the request names (None: unknown)."""
        client = cmd.client
        tag = HoldTag(cmd.request_id, client.key_id, cmd.route, cmd.model, self._models.version, choice.source)
        if choice.source is KeySource.USER:
            return await self._write_ahead(tag, Money.zero())
        budgeted = client.limits.applies or self._settings.global_limits.applies
        if price is None:
            if budgeted:
                raise _unpriced_model(cmd.model)
            return await self._write_ahead(tag, Money.zero())
        tier = cmd.params.get("service_tier")
        if budgeted and tier is not None and tier not in _PRICED_TIERS:
            # "priority" (or "scale") is billed at rates the catalogue does not have: held and
            # recorded at the standard ones, it would cost the budget about half its bill
            raise InvalidInput("unpriced_service_tier", field="service_tier", tier=str(tier)[:40])
        lines = capped(budget_lines(client.budget_scope, client.limits, self._settings.global_limits,
                                    self._clock.now(), self._settings.tz))
        sent = estimate_input(messages, cmd.params, cmd.model)
        unbounded = sent.unbounded if chained is not None else (*sent.unbounded, "previous_response")
        if unbounded and lines:  # counting it as 0 would let it past the budget for free
            raise InvalidInput("input_not_estimable", field="messages", kinds=", ".join(unbounded))
        worst = price.worst_case(sent.tokens + (chained or 0), output_worst_case(cmd.params, price.max_output_tokens,
                                                                   cmd.max_output_tokens))
        return await self._budgets.reserve(lines, worst, tag) if lines else await self._write_ahead(tag, worst)

    async def _write_ahead(self, tag: HoldTag, amount: Money) -> Reservation | None:
        """No budget to hold, but a hold on no counter is still the request's write-ahead
        record: should the replica die, the call ends as an orphaned row, not as nothing.
        Best effort: with the database away the request goes on (its row is spooled)."""
        try:
            return await self._budgets.reserve((), amount, tag)
        except ServiceUnavailable:
            return None

    # -- recording -------------------------------------------------------------------
    def _cost(self, cmd: ChatTurnCommand, upstream_model: str, usage: TokenUsage,
              upstream: str | None = None) -> Money | None:
        """At the price where the request was served (the catalogue may override it per upstream)."""
        price = self._models.price_of(upstream_model, upstream) or self._models.price_of(cmd.model, upstream)
        return None if price is None else price.cost(usage)

    def _record(self, cmd: ChatTurnCommand, *, choice: KeyChoice, usage: TokenUsage, cost: Money | None,
                model: str, text: str, started: float, reservation: Reservation | None,
                outcome: Outcome = Outcome.OK, estimated: bool = False, error_code: str | None = None,
                response_id: str | None = None, upstream: str | None = None, attempts: int = 1,
                pii_counted: bool = True) -> UsageRecord:
        """``pii_counted`` False for the refused first attempt of a fallback: the request's
        personal-data counts go on one row only, so sums over the ledger count each value once."""
        now = self._clock.now()
        turn = None
        if cmd.conversation_id and outcome is not Outcome.ERROR:
            system_text = " ".join(str(m.get("content", "")) for m in cmd.system if isinstance(m, dict))
            # The reply is stored as it will be replayed: masked like the request.
            turn = Turn(cmd.conversation_id, cmd.client.owner, cmd.request_id, now, system_text, cmd.prompt,
                        cmd.pii.stored(text), model)
        return UsageRecord(
            request_id=cmd.request_id, created_at=now, client_key_id=cmd.client.key_id,
            budget_key_id=cmd.client.budget_key_id, route=cmd.route, model=model, usage=usage, cost=cost, catalog_version=self._models.version, key_source=choice.source,
            outcome=outcome, estimated=estimated, latency_ms=int((self._clock.monotonic() - started) * 1000),
            fallback_reason=choice.fallback_reason, conversation_id=cmd.conversation_id, reservation=reservation,
            turn=turn, error_code=error_code, response_id=response_id, upstream=upstream,
            upstream_attempts=attempts,
            pii_counts={kind.value: n for kind, n in cmd.pii.counts.items()} if pii_counted else {})

    def _record_failure(self, cmd: ChatTurnCommand, choice: KeyChoice, started: float,
                        reservation: Reservation | None, error: UpstreamError, pii_counted: bool = True) -> None:
        """A failed call's row. An upstream that answered unreadably, or had the request but
        did not answer in time, may still have billed the call: it is charged its hold
        (estimated), never released for free."""
        billed = error.may_be_billed and reservation is not None
        cost = reservation.amount if billed and reservation is not None else Money.zero()
        self._ledger.submit(self._record(cmd, choice=choice, usage=TokenUsage(), cost=cost, model=cmd.model,
                                         text="", started=started, reservation=reservation,
                                         outcome=Outcome.ERROR, estimated=billed, error_code=error.code,
                                         upstream=error.upstream, attempts=error.attempts,
                                         pii_counted=pii_counted))

    def _fall_back(self, cmd: ChatTurnCommand, choice: KeyChoice, started: float, error: UpstreamError,
                   hold: Reservation | None = None) -> KeyChoice:
        """The caller's key was refused: the server key takes over if the policy allows (else the
        upstream's error is re-raised). The refused attempt keeps its own ledger row under
        ``<request_id>:user``, because the ledger stores one row per request id and that id
        belongs to the attempt that serves the request (its cost, settlement and turn)."""
        try:
            fallback = self._policy.fallback(error, may_use_server_key=cmd.client.may_use_server_key)
        except UpstreamError:
            self._record_failure(cmd, choice, started, hold, error)
            raise
        # The refused attempt's row settles its write-ahead hold; it carries no PII counts
        # (the answering attempt's row counts each value once).
        self._record_failure(replace(cmd, request_id=cmd.request_id + ":user"), choice, started, hold, error,
                             pii_counted=False)
        return fallback

    async def _store(self, record: UsageRecord, durable: bool = False) -> int | None:
        """A turn is stored before the answer goes out (the next turn must see it), and so is
        a row the caller will refer to (``durable``); other rows go to the batching writer."""
        if record.turn is not None or durable:
            return await self._ledger.record(record)
        self._ledger.submit(record)
        return None

    # -- the turn ----------------------------------------------------------------------
    async def _plan(self, cmd: ChatTurnCommand) -> _Plan:
        """Admission, common to both ways of answering: model, output cap, context, the
        personal-data guard (``plan.cmd`` is the guarded command), whose key pays, and the
        budget hold."""
        started = self._clock.monotonic()
        price = self.validate(cmd)
        chained = await self._check_references(cmd)
        cmd = self._guarded(cmd, await self._history(cmd))
        messages = [*cmd.system, *(cmd.history or []), *cmd.new_messages]
        choice = self._policy.choose(use_user_key=cmd.use_user_key, user_key=cmd.user_api_key,
                                     may_use_server_key=cmd.client.may_use_server_key)
        reservation = await self._admit(cmd, choice, price, messages, chained)
        request = UpstreamRequest(cmd.api, cmd.model, messages, cmd.params, client=cmd.client.key_id,
                                  retries=cmd.retries)
        return _Plan(cmd, started, price, messages, request, choice, reservation, chained)

    async def _call(self, cmd: ChatTurnCommand, plan: _Plan, call: Callable[[str], Awaitable[T]]) -> T:
        """``call`` with the chosen key; if the upstream refuses the caller's own key, once
        more with the server key (after admitting it to the budget). Failed attempts are in
        the ledger too."""
        try:
            return await call(plan.choice.api_key)
        except UpstreamError as error:
            if plan.choice.source is not KeySource.USER:
                self._record_failure(cmd, plan.choice, plan.started, plan.reservation, error)
                raise
            plan.choice = self._fall_back(cmd, plan.choice, plan.started, error, plan.reservation)
            plan.reservation = await self._admit(cmd, plan.choice, plan.price, plan.messages, plan.chained)
            try:
                return await call(plan.choice.api_key)
            except UpstreamError as second:
                self._record_failure(replace(cmd, request_id=cmd.request_id + ":fallback"), plan.choice,
                                     plan.started, plan.reservation, second)
                raise

    async def execute(self, cmd: ChatTurnCommand) -> ChatTurnResult:
        plan = await self._plan(cmd)
        cmd = plan.cmd
        reply = await self._call(cmd, plan, lambda key: self._provider.complete(plan.request, key))
        choice = plan.choice
        cost = self._cost(cmd, reply.model, reply.usage, reply.upstream)
        record = self._record(cmd, choice=choice, usage=reply.usage, cost=cost, model=reply.model or cmd.model,
                              text=reply.text, started=plan.started, reservation=plan.reservation,
                              response_id=str(reply.body.get("id") or "") or None, upstream=reply.upstream,
                              attempts=reply.attempts)
        if self._background is not None and _unfinished_background(cmd, reply, choice):
            await self._background.track(record, cmd.pii.policy)  # its row waits for the final usage (see use_cases.background)
            turn_index = None
        else:
            turn_index = await self._store(record, cmd.durable)
        return ChatTurnResult(reply, reply.usage, cost, choice.source, choice.fallback_reason, turn_index,
                              record.latency_ms, record.model, reply.text, upstream=record.upstream)

    async def stream(self, cmd: ChatTurnCommand) -> AsyncGenerator[StreamOpened | StreamData | ChatTurnResult, None]:
        """Yields ``StreamOpened``, the upstream's events as they come, then one
        ``ChatTurnResult`` carrying the stream's closing events: those are held back until
        the turn is stored, so a client that saw the end of a stream and sends the next turn
        at once finds this one in the history.

        A fallback to the server key is possible only before the first byte. If the consumer
        stops early, the ledger still gets a row: exact if the upstream had reported usage,
        otherwise estimated from what was relayed and marked so.
        """
        plan = await self._plan(cmd)
        cmd = plan.cmd

        async def open_stream(key: str) -> tuple[AsyncIterator[StreamData | StreamDone], StreamData | StreamDone]:
            events = self._provider.stream(plan.request, key)
            try:
                return events, await anext(events)
            except StopAsyncIteration:
                return events, StreamDone(None, cmd.model)

        events, first = await self._call(cmd, plan, open_stream)
        choice, started, reservation, messages = plan.choice, plan.started, plan.reservation, plan.messages
        text: list[str] = []
        held: list[StreamData] = []
        done: StreamDone | None = None

        def settle(outcome: Outcome) -> UsageRecord:
            reply_text = "".join(text)
            usage = done.usage if done and done.usage else None
            model = (done.model if done else None) or cmd.model
            estimated = usage is None
            if usage is None:  # cut short before the upstream reported usage
                prompt = estimate_message_tokens(messages) + (plan.chained or 0)  # a chain's context is billed too
                usage = TokenUsage(input_tokens=prompt, output_tokens=estimate_tokens(reply_text) + len(text))
            # a stream cut short is still costed where it was served
            upstream, attempts = (done.upstream, done.attempts) if done else (first.upstream, first.attempts)
            return self._record(cmd, choice=choice, usage=usage, cost=self._cost(cmd, model, usage, upstream),
                                model=model, text=reply_text, started=started, reservation=reservation,
                                outcome=outcome, estimated=estimated, response_id=done.response_id if done else None,
                                upstream=upstream, attempts=attempts)

        try:
            yield StreamOpened(choice.source, choice.fallback_reason,
                               (first.headers if isinstance(first, StreamData) else None) or {})
            event: StreamData | StreamDone = first
            while not isinstance(event, StreamDone):
                text.append(event.text_delta)
                if event.final or held:  # the closing event and anything after it wait for the store
                    held.append(event)
                else:
                    yield event
                event = await anext(events)
            done = event
        except StopAsyncIteration:
            pass
        except BaseException:
            # The client went away (GeneratorExit / cancellation) or the upstream broke
            # mid-stream. This path must not suspend inside a cancelled task: submit only.
            self._ledger.submit(settle(Outcome.ABORTED))
            raise
        record = settle(Outcome.OK)
        turn_index = await self._store(record, cmd.durable)
        yield ChatTurnResult(None, record.usage, record.cost, choice.source, choice.fallback_reason, turn_index,
                             record.latency_ms, record.model, "".join(text), record.estimated, tuple(held),
                             upstream=record.upstream)


def _unfinished_background(cmd: ChatTurnCommand, reply: UpstreamReply, choice: KeyChoice) -> bool:
    """A background response the upstream has only queued: no usage yet. Settled later from
    its final usage, with the server key (a caller's own key is never kept to poll with;
    its spend is not the server's budget anyway)."""
    return (cmd.api is UpstreamApi.RESPONSES and cmd.params.get("background") is True
            and choice.source is KeySource.SERVER and reply.body.get("status") in ("queued", "in_progress")
            and isinstance(reply.body.get("id"), str) and bool(reply.body["id"]))


@dataclass(slots=True)
class _Plan:
    cmd: ChatTurnCommand
    started: float
    price: ModelPrice | None
    messages: list[Any]
    request: UpstreamRequest
    choice: KeyChoice
    reservation: Reservation | None
    chained: int | None = 0  # the stored context the request names, in tokens (None: unknown)


def _check_output_cap(cmd: ChatTurnCommand, price: ModelPrice | None) -> None:
    """max_tokens may not exceed what the model can produce (it also bounds the reservation)."""
    if price is not None and cmd.max_output_tokens is not None and cmd.max_output_tokens > price.max_output_tokens:
        raise InvalidInput("max_tokens_too_large", field="max_tokens", max=price.max_output_tokens)
