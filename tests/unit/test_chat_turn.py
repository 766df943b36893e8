"""HandleChatTurn with the in-memory fakes: history, key policy, budgets, unpriced models,
streams cut short, and user keys that must never be stored."""
from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

import pytest

from domain.adapters.fakes import FakeClock, FakeLlmProvider, InMemoryBudgetStore, InMemoryConversationStore
from domain.adapters.prices import load_price_catalog
from domain.budgets import GLOBAL_SCOPE
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.errors import BudgetExceeded, InvalidInput, UpstreamError
from domain.key_policy import DefaultKeyPolicy, FallbackReason, KeySource
from domain.ledger import Outcome
from domain.model_catalog import ModelCatalog
from domain.money import Money
from domain.pii import PiiPolicy, PiiScanner
from domain.ports import StreamData, UpstreamApi
from domain.usage import TokenUsage
from domain.use_cases.chat_turn import ChatSettings, ChatTurnCommand, ChatTurnResult, HandleChatTurn, StreamOpened

SERVER_KEY = "sk-server-key-0000"
USER_KEY = "sk-user-TOPSECRET-7f3a9c"
BAD_USER_KEY = "sk-invalid-TOPSECRET-5e1d"
QUOTA_USER_KEY = "sk-quota-TOPSECRET-44ab"
DAY, MONTH = "d:2026-11-23", "m:2026-11"  # FakeClock starts 2026-11-23 12:00 UTC

CAPPED = ClientIdentity("k1", "abcd1234", BudgetLimits(daily=Money.from_usd("1"), monthly=Money.from_usd("10")))
UNCAPPED = ClientIdentity("k2", "efgh5678", BudgetLimits())


class World:
    def __init__(self, settings: ChatSettings = ChatSettings(), server_key: str | None = SERVER_KEY,
                 usage: TokenUsage | None = None, models: ModelCatalog | None = None) -> None:
        self.budgets = InMemoryBudgetStore()
        self.store = InMemoryConversationStore(self.budgets)
        self.provider = FakeLlmProvider(**({"usage": usage} if usage else {}))
        self.clock = FakeClock()
        self.use_case = HandleChatTurn(provider=self.provider, conversations=self.store, ledger=self.store,
                                       budgets=self.budgets,
                                       models=models or ModelCatalog(load_price_catalog()),
                                       policy=DefaultKeyPolicy(server_key), clock=self.clock, settings=settings)

    def spent(self, scope: str = "key:k1", period: str = DAY) -> int:
        return self.budgets.spent_.get((scope, period), 0)

    def reserved(self, scope: str = "key:k1", period: str = DAY) -> int:
        return self.budgets.reserved.get((scope, period), 0)


def command(prompt: str, *, request_id: str = "r1", client: ClientIdentity = CAPPED, model: str = "gpt-4o-mini",
            conversation_id: str | None = None, history=None, system: str = "", **kw) -> ChatTurnCommand:
    return ChatTurnCommand(
        request_id=request_id, client=client, api=UpstreamApi.RESPONSES, model=model, route="/api/v1/chat",
        new_messages=[{"role": "user", "content": prompt}], prompt=prompt,
        pii=kw.pop("pii", None) or PiiScanner(PiiPolicy.MASK),
        system=[{"role": "system", "content": system}] if system else [], history=history,
        conversation_id=conversation_id, max_output_tokens=kw.pop("max_output_tokens", 1000), **kw)


def sent_messages(world: World, call: int = -1) -> list:
    return world.provider.calls[call][0].messages


# -- history --------------------------------------------------------------------------------
async def test_second_turn_of_a_conversation_replays_the_stored_turn():
    w = World()
    first = await w.use_case.execute(command("안녕하세요", request_id="r1", conversation_id="conv-1",
                                             system="be brief"))
    assert first.text == "fake reply to: 안녕하세요"
    assert first.turn_index == 1
    second = await w.use_case.execute(command("and then?", request_id="r2", conversation_id="conv-1",
                                              system="be brief"))
    assert second.turn_index == 2
    assert sent_messages(w) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "안녕하세요"},
        {"role": "assistant", "content": "fake reply to: 안녕하세요"},
        {"role": "user", "content": "and then?"},
    ]


async def test_turns_without_a_conversation_id_are_not_replayed():
    w = World()
    await w.use_case.execute(command("one", request_id="r1"))
    await w.use_case.execute(command("two", request_id="r2"))
    assert sent_messages(w) == [{"role": "user", "content": "two"}]
    assert w.store.turns == {}


async def test_history_is_scoped_by_owner():
    w = World()
    await w.use_case.execute(command("mine", request_id="r1", conversation_id="shared-name", client=CAPPED))
    await w.use_case.execute(command("yours", request_id="r2", conversation_id="shared-name", client=UNCAPPED))
    assert sent_messages(w) == [{"role": "user", "content": "yours"}]


async def test_explicit_history_is_used_as_given_instead_of_stored_turns():
    w = World()
    await w.use_case.execute(command("stored question", request_id="r1", conversation_id="c"))
    given = [{"role": "user", "content": "client-side q"}, {"role": "assistant", "content": "client-side a"}]
    await w.use_case.execute(command("now", request_id="r2", conversation_id="c", history=given))
    assert sent_messages(w) == [*given, {"role": "user", "content": "now"}]


async def test_explicit_empty_history_means_no_context():
    w = World()
    await w.use_case.execute(command("stored question", request_id="r1", conversation_id="c"))
    await w.use_case.execute(command("now", request_id="r2", conversation_id="c", history=[]))
    assert sent_messages(w) == [{"role": "user", "content": "now"}]


async def test_stored_history_is_trimmed_to_the_token_budget_keeping_the_newest_whole_turns():
    # Each prompt is 40 ASCII chars → 10 tokens; its reply "fake reply to: " + 40 chars = 55 chars
    # → 14 tokens; plus 2 × 4 framing tokens: 32 tokens a turn. A 70-token budget keeps two.
    w = World(ChatSettings(history_token_budget=70))
    prompts = [f"q{i}-" + "x" * 37 for i in range(1, 4)]
    assert all(len(p) == 40 for p in prompts)
    for i, p in enumerate(prompts):
        await w.use_case.execute(command(p, request_id=f"r{i}", conversation_id="long"))
    await w.use_case.execute(command("last", request_id="r9", conversation_id="long"))
    assert sent_messages(w) == [
        {"role": "user", "content": prompts[1]}, {"role": "assistant", "content": "fake reply to: " + prompts[1]},
        {"role": "user", "content": prompts[2]}, {"role": "assistant", "content": "fake reply to: " + prompts[2]},
        {"role": "user", "content": "last"},
    ]


async def test_stored_history_that_fits_exactly_is_kept_whole():
    w = World(ChatSettings(history_token_budget=96))  # 3 × 32
    for i in range(3):
        await w.use_case.execute(command(f"q{i}-" + "x" * 37, request_id=f"r{i}", conversation_id="c"))
    await w.use_case.execute(command("last", request_id="r9", conversation_id="c"))
    assert len(sent_messages(w)) == 7


# -- key policy in the use case ----------------------------------------------------------------
async def test_server_key_turn_reserves_then_settles_to_the_actual_cost():
    # Fake usage: 10 input + 12 output on gpt-4o-mini: 10*0.15 + 12*0.60 = 1.5 + 7.2 = 8.7 per 1M
    # → 0.0000087 USD = 8700 nano-USD.
    w = World()
    result = await w.use_case.execute(command("hello", request_id="r1"))
    assert result.key_source is KeySource.SERVER
    assert result.fallback_reason is None
    assert result.cost == Money(8_700)
    assert w.provider.calls[0][1] == SERVER_KEY
    for scope in ("key:k1", GLOBAL_SCOPE):
        for period in (DAY, MONTH):
            assert w.spent(scope, period) == 8_700
            assert w.reserved(scope, period) == 0
    record = w.store.records["r1"]
    assert (record.key_source, record.outcome, record.estimated) == (KeySource.SERVER, Outcome.OK, False)
    assert record.charged == Money(8_700)
    assert record.catalog_version == load_price_catalog().version


async def test_user_key_turn_is_recorded_with_key_source_user_and_not_charged():
    w = World()
    result = await w.use_case.execute(command("hello", request_id="r1", use_user_key=True, user_api_key=USER_KEY))
    assert result.key_source is KeySource.USER
    assert w.provider.calls[0][1] == USER_KEY
    assert result.cost == Money(8_700)  # what it cost the caller, still reported
    record = w.store.records["r1"]
    assert record.key_source is KeySource.USER
    # Its hold is only the write-ahead record: on no budget line, for nothing.
    assert record.reservation is not None and record.reservation.lines == () and record.reservation.amount == Money(0)
    assert record.charged == Money.zero()
    assert w.budgets.spent_ == {} and w.budgets.reserved == {}


async def test_user_key_flag_without_key_uses_the_server_key_and_says_why():
    w = World()
    result = await w.use_case.execute(command("hello", use_user_key=True, user_api_key=None))
    assert (result.key_source, result.fallback_reason) == (KeySource.SERVER, FallbackReason.USER_KEY_MISSING)
    assert w.spent() == 8_700


@pytest.mark.parametrize(("user_key", "reason"), [(BAD_USER_KEY, FallbackReason.USER_KEY_REJECTED),
                                                  (QUOTA_USER_KEY, FallbackReason.USER_KEY_QUOTA)])
async def test_rejected_user_key_falls_back_to_the_server_key(user_key, reason):
    w = World()
    result = await w.use_case.execute(command("hello", request_id="r1", conversation_id="c",
                                              use_user_key=True, user_api_key=user_key))
    assert [key for _, key in w.provider.calls] == [user_key, SERVER_KEY]
    assert (result.key_source, result.fallback_reason) == (KeySource.SERVER, reason)
    assert result.text == "fake reply to: hello"
    assert result.turn_index == 1
    served = [r for r in w.store.records.values() if r.outcome is Outcome.OK]
    assert len(served) == 1
    assert (served[0].key_source, served[0].fallback_reason) == (KeySource.SERVER, reason)
    assert served[0].request_id == "r1"
    failed = [r for r in w.store.records.values() if r.outcome is Outcome.ERROR]
    assert len(failed) == 1 and failed[0].key_source is KeySource.USER and failed[0].charged == Money.zero()
    # The refused attempt has a row of its own; the request id stays with the served attempt.
    assert failed[0].request_id == "r1:user"
    # The server key's budget is charged for the served request and nothing stays reserved.
    assert w.spent() == 8_700
    assert w.reserved() == 0
    assert w.budgets.open == {}
    assert [t.prompt for t in w.store.turns[("k1", "c")]] == ["hello"]


async def test_rejected_user_key_is_not_replaced_when_the_client_may_not_use_the_server_key():
    w = World()
    client = ClientIdentity("k3", "zzzz0000", BudgetLimits(), may_use_server_key=False)
    with pytest.raises(UpstreamError) as info:
        await w.use_case.execute(command("hi", client=client, use_user_key=True, user_api_key=BAD_USER_KEY))
    assert info.value.upstream_status == 401
    assert [key for _, key in w.provider.calls] == [BAD_USER_KEY]
    assert list(w.store.records) == ["r1"]
    assert (w.store.records["r1"].outcome, w.store.records["r1"].key_source) == (Outcome.ERROR, KeySource.USER)


async def test_upstream_failure_on_the_server_key_is_not_retried_and_releases_the_hold():
    w = World()
    w.provider.fail_with = UpstreamError("upstream_error", status=500, message="boom", upstream_status=500)
    with pytest.raises(UpstreamError):
        await w.use_case.execute(command("hi", request_id="r1"))
    assert len(w.provider.calls) == 1
    assert w.store.records["r1"].outcome is Outcome.ERROR
    assert w.reserved() == 0 and w.spent() == 0


# -- admission -------------------------------------------------------------------------------
async def test_budget_exceeded_refuses_before_calling_the_provider():
    # Worst case of gpt-4o-mini with max_output_tokens 1000 is at least 1000*0.60 = 600 per 1M
    # = 0.0006 USD, over a 0.0005 USD daily cap.
    client = ClientIdentity("k4", "tiny0000", BudgetLimits(daily=Money.from_usd("0.0005")))
    w = World()
    with pytest.raises(BudgetExceeded) as info:
        await w.use_case.execute(command("hi", client=client))
    assert info.value.code == "budget_exceeded"
    assert w.provider.calls == []
    assert w.store.records == {}
    assert w.budgets.reserved == {}


async def test_global_budget_applies_to_every_client():
    w = World(ChatSettings(global_limits=BudgetLimits(daily=Money.from_usd("0.0001"))))
    with pytest.raises(BudgetExceeded):
        await w.use_case.execute(command("hi", client=UNCAPPED))
    assert w.provider.calls == []


async def test_budget_exceeded_after_spending_up_to_the_cap():
    # Each turn reserves its worst case: prompt "hi" (1 + 4 framing = 5 tokens) and 100 output
    # tokens: 5*0.15 + 100*0.60 = 60.75 per 1M = 60 750 nanos; it settles at 8 700.
    client = ClientIdentity("k5", "cap00000", BudgetLimits(daily=Money(80_000)))
    w = World()
    await w.use_case.execute(command("hi", request_id="a", client=client, max_output_tokens=100))
    assert w.spent("key:k5") == 8_700
    # 8 700 spent + 60 750 = 69 450 ≤ 80 000: admitted; then 17 400 + 60 750 = 78 150: admitted;
    # then 26 100 + 60 750 = 86 850 > 80 000: refused.
    await w.use_case.execute(command("hi", request_id="b", client=client, max_output_tokens=100))
    await w.use_case.execute(command("hi", request_id="c", client=client, max_output_tokens=100))
    with pytest.raises(BudgetExceeded):
        await w.use_case.execute(command("hi", request_id="d", client=client, max_output_tokens=100))
    assert len(w.provider.calls) == 3
    assert w.spent("key:k5") == 26_100


async def test_unknown_model_is_invalid_input():
    w = World()
    with pytest.raises(InvalidInput) as info:
        await w.use_case.execute(command("hi", model="gpt-9-ultra"))
    assert (info.value.code, info.value.field) == ("unknown_model", "model")
    assert w.provider.calls == []


async def test_snapshot_of_a_catalogue_model_is_accepted_and_priced_as_its_family():
    w = World()
    result = await w.use_case.execute(command("hi", model="gpt-4o-mini-2024-07-18"))
    assert result.cost == Money(8_700)


async def test_a_name_that_only_looks_like_a_snapshot_is_refused_before_the_upstream():
    w = World()
    with pytest.raises(InvalidInput) as info:
        await w.use_case.execute(command("hi", model="gpt-4o-mini-9999"))
    assert info.value.code == "unknown_model"
    assert w.provider.calls == []


UNPRICED = ModelCatalog(load_price_catalog(), ["acme-finetune"])


async def test_unpriced_allowed_model_is_refused_on_the_server_key_when_budgets_apply():
    w = World(models=UNPRICED)
    with pytest.raises(InvalidInput) as info:
        await w.use_case.execute(command("hi", model="acme-finetune", client=CAPPED))
    assert info.value.code == "unpriced_model"
    assert w.provider.calls == []


async def test_unpriced_allowed_model_runs_on_the_users_key_with_cost_none():
    w = World(models=UNPRICED)
    result = await w.use_case.execute(command("hi", request_id="r1", model="acme-finetune", client=CAPPED,
                                              use_user_key=True, user_api_key=USER_KEY))
    assert result.cost is None
    record = w.store.records["r1"]
    assert (record.cost, record.priced, record.key_source) == (None, False, KeySource.USER)
    assert record.charged == Money.zero()


async def test_unpriced_allowed_model_runs_on_the_server_key_when_no_budget_applies():
    w = World(models=UNPRICED)
    result = await w.use_case.execute(command("hi", request_id="r1", model="acme-finetune", client=UNCAPPED))
    assert result.cost is None and result.key_source is KeySource.SERVER
    assert w.store.records["r1"].priced is False


# -- streaming ------------------------------------------------------------------------------
async def test_stream_relays_events_then_one_result_with_exact_usage():
    w = World()
    events = [e async for e in w.use_case.stream(command("hello there", request_id="s1", conversation_id="c"))]
    opened, *data, result = events
    assert isinstance(opened, StreamOpened) and opened.key_source is KeySource.SERVER
    assert all(isinstance(e, StreamData) for e in data)
    assert "".join(e.text_delta for e in data).strip() == "fake reply to: hello there"
    assert isinstance(result, ChatTurnResult)
    assert (result.cost, result.estimated, result.turn_index) == (Money(8_700), False, 1)
    record = w.store.records["s1"]
    assert (record.outcome, record.estimated) == (Outcome.OK, False)
    assert w.spent() == 8_700 and w.reserved() == 0


async def test_stream_stopped_after_the_first_event_leaves_one_estimated_aborted_record():
    w = World()
    gen = w.use_case.stream(command("hello there", request_id="s1", conversation_id="c"))
    assert isinstance(await anext(gen), StreamOpened)
    first = await anext(gen)
    assert isinstance(first, StreamData)
    await gen.aclose()
    assert list(w.store.records) == ["s1"]
    record = w.store.records["s1"]
    assert record.outcome is Outcome.ABORTED
    assert record.estimated is True
    assert record.key_source is KeySource.SERVER
    # Estimated from what was relayed: the prompt "hello there" (11 chars → 3 + 4 framing = 7)
    # and one relayed delta "fake " (5 chars → 2, + 1 per delta = 3).
    assert (record.usage.input_tokens, record.usage.output_tokens) == (7, 3)
    # 7*0.15 + 3*0.60 = 1.05 + 1.8 = 2.85 per 1M → 2 850 nanos, charged and nothing left reserved.
    assert record.cost == Money(2_850)
    assert w.spent() == 2_850 and w.reserved() == 0
    assert w.budgets.open == {}


async def test_stream_falls_back_to_the_server_key_before_the_first_byte():
    w = World()
    events = [e async for e in w.use_case.stream(command("hi", request_id="s1", use_user_key=True,
                                                         user_api_key=BAD_USER_KEY))]
    result = events[-1]
    assert (result.key_source, result.fallback_reason) == (KeySource.SERVER, FallbackReason.USER_KEY_REJECTED)
    served = [r for r in w.store.records.values() if r.outcome is Outcome.OK]
    assert len(served) == 1 and served[0].key_source is KeySource.SERVER
    assert w.spent() == 8_700 and w.reserved() == 0


# -- the caller's key never reaches storage ----------------------------------------------------
async def test_user_keys_never_appear_in_any_stored_record_or_turn():
    w = World()
    results = [
        await w.use_case.execute(command("a", request_id="u1", conversation_id="c", use_user_key=True,
                                         user_api_key=USER_KEY)),
        await w.use_case.execute(command("b", request_id="u2", conversation_id="c", use_user_key=True,
                                         user_api_key=BAD_USER_KEY)),
        await w.use_case.execute(command("c", request_id="u3", conversation_id="c", use_user_key=True,
                                         user_api_key=QUOTA_USER_KEY)),
    ]
    gen = w.use_case.stream(command("d", request_id="u4", conversation_id="c", use_user_key=True,
                                    user_api_key=USER_KEY))
    await anext(gen)
    await gen.aclose()
    results += [e async for e in w.use_case.stream(command("e", request_id="u5", conversation_id="c",
                                                           use_user_key=True, user_api_key=BAD_USER_KEY))]
    assert len(w.store.records) >= 5
    dumps = []
    for record in w.store.records.values():
        dumps += [repr(record), str(asdict(record))]
    for turns in w.store.turns.values():
        for turn in turns:
            dumps += [repr(turn), str(asdict(turn))]
    dumps += [repr(r) for r in results]
    dumps.append(repr(command("x", use_user_key=True, user_api_key=USER_KEY)))
    blob = "\n".join(dumps)
    for secret in ("TOPSECRET", USER_KEY, BAD_USER_KEY, QUOTA_USER_KEY):
        assert secret not in blob
    assert SERVER_KEY not in blob


def test_fake_clock_periods_match_the_constants_used_here():
    clock = FakeClock()
    assert f"d:{clock.now():%Y-%m-%d}" == DAY and f"m:{clock.now():%Y-%m}" == MONTH
    assert Decimal(8_700) / 10**9 == Decimal("0.0000087")


# -- personal data ----------------------------------------------------------------------------
PHONE, RRN = "010-2345-6789", "900101-1234568"


async def test_block_refuses_before_any_budget_hold_upstream_call_or_row():
    from domain.errors import PiiDetected

    w = World()
    cmd = command(f"번호 {PHONE}", conversation_id="c-block", system=f"주민 {RRN}", pii=PiiScanner(PiiPolicy.BLOCK))
    with pytest.raises(PiiDetected) as caught:
        await w.use_case.execute(cmd)
    assert caught.value.kinds == ["rrn", "phone"]
    with pytest.raises(PiiDetected):
        await anext(w.use_case.stream(command(f"번호 {PHONE}", pii=PiiScanner(PiiPolicy.BLOCK))))
    assert w.provider.calls == [] and w.store.records == {} and w.store.turns == {}
    assert w.reserved() == 0 and w.reserved(GLOBAL_SCOPE, DAY) == 0


async def test_mask_sends_and_stores_placeholders_and_counts_each_value_once():
    w = World()
    scanner = PiiScanner(PiiPolicy.MASK)
    result = await w.use_case.execute(command(f"번호 {PHONE} 주민 {RRN}", conversation_id="c-mask",
                                              system=f"담당 {PHONE}", pii=scanner,
                                              params={"instructions": f"회신 {PHONE}"}))
    assert scanner.total == 4 and result.text == "fake reply to: 번호 [전화번호1] 주민 [주민등록번호1]"
    request = w.provider.calls[-1][0]
    assert request.params["instructions"] == "회신 [전화번호1]"
    assert request.messages == [{"role": "system", "content": "담당 [전화번호1]"},
                                {"role": "user", "content": "번호 [전화번호1] 주민 [주민등록번호1]"}]
    (turn,) = w.store.turns[("k1", "c-mask")]
    assert (turn.system_prompt, turn.prompt) == ("담당 [전화번호1]", "번호 [전화번호1] 주민 [주민등록번호1]")
    assert w.store.records["r1"].pii_counts == {"phone": 3, "rrn": 1}


async def test_off_sends_values_as_they_are():
    w = World()
    await w.use_case.execute(command(f"번호 {PHONE}", pii=PiiScanner(PiiPolicy.OFF)))
    assert sent_messages(w)[-1]["content"] == f"번호 {PHONE}"
    assert w.store.records["r1"].pii_counts == {}


async def test_a_fallback_counts_the_requests_personal_data_on_one_row_only():
    w = World()
    await w.use_case.execute(command(f"번호 {PHONE}", use_user_key=True, user_api_key=BAD_USER_KEY))
    assert w.store.records["r1:user"].pii_counts == {}
    assert w.store.records["r1"].pii_counts == {"phone": 1}
    assert all("010" not in str(m) for call in w.provider.calls for m in call[0].messages)  # both attempts masked


async def test_under_block_a_reply_with_a_number_is_stored_masked_so_the_next_turn_is_not_refused():
    w = World()
    w.provider._text = lambda request: f"담당자 직통 {PHONE} 로 연락하세요"  # type: ignore[method-assign]
    first = command("환불 절차 알려주세요", conversation_id="c-reply", pii=PiiScanner(PiiPolicy.BLOCK))
    await w.use_case.execute(first)
    (turn,) = w.store.turns[("k1", "c-reply")]
    assert turn.reply == "담당자 직통 [전화번호1] 로 연락하세요"
    await w.use_case.execute(command("감사합니다", request_id="r2", conversation_id="c-reply",
                                     pii=PiiScanner(PiiPolicy.BLOCK)))
