"""HandlePassThrough (embeddings, moderations) and ListModels against the in-memory fakes."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from domain.adapters.fakes import FakeClock, FakeLlmProvider, InMemoryBudgetStore, InMemoryConversationStore
from domain.adapters.prices import load_price_catalog
from domain.budgets import HoldTag
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.errors import BudgetExceeded, InvalidInput, NotFound, PiiDetected, UpstreamError
from domain.key_policy import DefaultKeyPolicy, FallbackReason, KeySource
from domain.ledger import Outcome
from domain.model_catalog import ModelCatalog
from domain.money import Money
from domain.pii import PiiPolicy, PiiScanner
from domain.ports import UpstreamApi
from domain.usage import TokenUsage
from domain.use_cases.models import ListModels, ListModelsQuery
from domain.use_cases.passthrough import HandlePassThrough, PassThroughCommand, PassThroughSettings

SERVER_KEY = "sk-server-key-0000"
CAPPED = ClientIdentity("k1", "abcd1234", BudgetLimits(daily=Money.from_usd("0.001")))


class World:
    def __init__(self, tokens: int = 1000, clock: FakeClock | None = None,
                 settings: PassThroughSettings | None = None) -> None:
        self.budgets = InMemoryBudgetStore()
        self.store = InMemoryConversationStore(self.budgets)
        self.provider = FakeLlmProvider(usage=TokenUsage(input_tokens=tokens))
        self.use_case = HandlePassThrough(provider=self.provider, ledger=self.store, budgets=self.budgets,
                                          models=ModelCatalog(load_price_catalog()),
                                          policy=DefaultKeyPolicy(SERVER_KEY), clock=clock or FakeClock(),
                                          settings=settings or PassThroughSettings())


def command(api: UpstreamApi = UpstreamApi.EMBEDDINGS, model: str = "text-embedding-3-small", tokens: int = 1000,
            **kw) -> PassThroughCommand:
    return PassThroughCommand(request_id=kw.pop("request_id", "e1"), client=kw.pop("client", CAPPED), api=api,
                              model=model, route="/v1/" + api.value, params=kw.pop("params", {"input": "x"}), input_tokens=tokens,
                              pii=kw.pop("pii", PiiScanner(PiiPolicy.OFF)), **kw)


async def test_embeddings_cost_their_input_at_the_catalogue_price_and_settle_the_hold():
    w = World(tokens=1000)
    result = await w.use_case.execute(command())
    assert result.cost == Money(20_000)  # 1000 × 0.02 USD / 1M = 0.00002 USD
    record = w.store.records["e1"]
    assert (record.outcome, record.cost, record.usage.output_tokens) == (Outcome.OK, Money(20_000), 0)
    assert w.budgets.open == {}


async def test_embeddings_over_the_budget_are_refused_before_the_upstream():
    w = World()
    with pytest.raises(BudgetExceeded):
        await w.use_case.execute(command(model="text-embedding-3-large", tokens=100_000))  # 0.013 USD > 0.001
    assert w.provider.calls == [] and w.store.records == {}


@pytest.mark.parametrize(("zone", "day"), [("Asia/Seoul", "d:2026-12-01"), ("UTC", "d:2026-11-30")])
async def test_embeddings_hold_on_the_budget_time_zones_day(zone, day):
    # 20:00 UTC on the last of November is already December 1st in Seoul.
    w = World(clock=FakeClock(datetime(2026, 11, 30, 20, 0, tzinfo=UTC)),
              settings=PassThroughSettings(tz=ZoneInfo(zone)))
    await w.use_case.execute(command())
    assert set(w.budgets.reserved) == {("key:k1", day)}  # the key's daily cap, held and settled


async def test_an_unknown_embedding_model_is_refused():
    w = World()
    with pytest.raises(InvalidInput):
        await w.use_case.execute(command(model="my-embedder"))
    assert w.provider.calls == []


async def test_moderations_take_any_model_hold_no_budget_and_cost_zero():
    w = World(tokens=0)
    result = await w.use_case.execute(command(UpstreamApi.MODERATIONS, model="omni-moderation-latest",
                                              tokens=10_000_000))
    assert result.cost == Money.zero() and w.store.records["e1"].cost == Money.zero()
    assert w.budgets.reserved == {}


async def test_a_refused_user_key_falls_back_to_the_server_key_with_both_attempts_recorded():
    w = World()
    result = await w.use_case.execute(command(use_user_key=True, user_api_key="sk-invalid-user"))
    assert (result.key_source, result.fallback_reason) == (KeySource.SERVER, FallbackReason.USER_KEY_REJECTED)
    assert [k for _, k in w.provider.calls] == ["sk-invalid-user", SERVER_KEY]
    assert w.store.records["e1:user"].outcome is Outcome.ERROR and w.store.records["e1"].outcome is Outcome.OK


PHONE, CARD, RRN = "010-2345-6789", "4111-1111-1111-1111", "900101-1234568"


@pytest.mark.parametrize(("api", "value", "sent"), [
    (UpstreamApi.EMBEDDINGS, f"번호 {PHONE}", "번호 [전화번호1]"),
    (UpstreamApi.EMBEDDINGS, [f"카드 {CARD}", "깨끗한 문장", f"같은 카드 {CARD}, 번호 {PHONE}"],
     ["카드 [카드번호1]", "깨끗한 문장", "같은 카드 [카드번호1], 번호 [전화번호1]"]),
    (UpstreamApi.MODERATIONS, [{"type": "text", "text": f"주민번호 {RRN}"},
                               {"type": "image_url", "image_url": {"url": "https://x.test/010-2345-6789.png"}}],
     [{"type": "text", "text": "주민번호 [주민등록번호1]"},
      {"type": "image_url", "image_url": {"url": "https://x.test/010-2345-6789.png"}}]),
])
async def test_mask_sends_placeholders_upstream_and_counts_them_on_the_row(api, value, sent):
    w = World()
    scanner = PiiScanner(PiiPolicy.MASK)
    model = "text-embedding-3-small" if api is UpstreamApi.EMBEDDINGS else "omni-moderation-latest"
    params = {"input": value, "dimensions": 8} if api is UpstreamApi.EMBEDDINGS else {"input": value}
    await w.use_case.execute(command(api, model=model, params=params, pii=scanner))
    [(request, _)] = w.provider.calls
    assert request.params == {**params, "input": sent}
    assert params["input"] == value  # the caller's body is not modified
    assert w.store.records["e1"].pii_counts == {k.value: n for k, n in scanner.counts.items()} != {}


async def test_token_arrays_pass_as_they_are():
    w = World()
    tokens = [[15339, 1917], [9906]]
    await w.use_case.execute(command(params={"input": tokens}, pii=PiiScanner(PiiPolicy.MASK)))
    assert w.provider.calls[0][0].params["input"] == tokens and w.store.records["e1"].pii_counts == {}


@pytest.mark.parametrize("api", [UpstreamApi.EMBEDDINGS, UpstreamApi.MODERATIONS])
async def test_block_refuses_before_any_hold_call_or_row(api):
    w = World()
    model = "text-embedding-3-small" if api is UpstreamApi.EMBEDDINGS else "omni-moderation-latest"
    with pytest.raises(PiiDetected) as refused:
        await w.use_case.execute(command(api, model=model, params={"input": ["안녕", f"카드 {CARD} 번호 {PHONE}"]},
                                         pii=PiiScanner(PiiPolicy.BLOCK)))
    assert refused.value.params == {"kinds": "phone, card"}
    assert w.provider.calls == [] and w.store.records == {} and w.budgets.reserved == {} and w.budgets.open == {}


async def test_off_sends_the_input_as_is():
    w = World()
    await w.use_case.execute(command(params={"input": f"번호 {PHONE}"}, pii=PiiScanner(PiiPolicy.OFF)))
    assert w.provider.calls[0][0].params["input"] == f"번호 {PHONE}" and w.store.records["e1"].pii_counts == {}


async def test_a_fallback_counts_the_values_once_on_the_answering_row():
    w = World()
    await w.use_case.execute(command(params={"input": f"번호 {PHONE}"}, pii=PiiScanner(PiiPolicy.MASK),
                                     use_user_key=True, user_api_key="sk-invalid-user"))
    assert [r.params["input"] for r, _ in w.provider.calls] == ["번호 [전화번호1]"] * 2
    assert (w.store.records["e1:user"].pii_counts, w.store.records["e1"].pii_counts) == ({}, {"phone": 1})


async def test_a_refused_own_key_without_fallback_keeps_the_counts_on_its_row():
    w = World()
    with pytest.raises(UpstreamError):
        await w.use_case.execute(command(params={"input": f"번호 {PHONE}"}, pii=PiiScanner(PiiPolicy.MASK),
                                         client=ClientIdentity("k3", "ijkl9012", BudgetLimits(), False),
                                         use_user_key=True, user_api_key="sk-invalid-user"))
    assert {k: r.pii_counts for k, r in w.store.records.items()} == {"e1:user": {"phone": 1}}


async def test_the_client_retrying_itself_reaches_the_provider():
    w = World()
    await w.use_case.execute(command(retries=False))
    assert w.provider.calls[0][0].retries is False


class FlakyModels(FakeLlmProvider):
    def __init__(self) -> None:
        super().__init__()
        self.served = ["gpt-4o-mini", "gpt-4o-mini-2024-07-18", "not-allowed", "text-embedding-3-small"]
        self.asked = 0
        self.down = False

    async def list_models(self, api_key: str) -> list[str]:
        self.asked += 1
        if self.down:
            raise UpstreamError("upstream_unreachable", upstream_status=502)
        return self.served


async def test_models_are_the_upstreams_that_the_operator_allows_cached_and_kept_while_it_is_away():
    provider, clock = FlakyModels(), FakeClock()
    models = ListModels(ModelCatalog(load_price_catalog()), provider, SERVER_KEY, clock, ttl=300)
    expected = ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "text-embedding-3-small")
    assert await models.execute(ListModelsQuery()) == expected
    assert await models.execute(ListModelsQuery()) == expected and provider.asked == 1, "cached"
    clock.ticks += 301
    provider.down = True
    assert await models.execute(ListModelsQuery()) == expected, "the last list while the upstream is away"
    assert await models.execute(ListModelsQuery("gpt-4o-mini")) == ("gpt-4o-mini",)
    with pytest.raises(NotFound):
        await models.execute(ListModelsQuery("gpt-4o"))  # allowed, not served


async def test_models_without_a_server_key_are_the_operators_list():
    catalog = ModelCatalog(load_price_catalog())
    models = ListModels(catalog, FlakyModels(), None, FakeClock())
    assert await models.execute(ListModelsQuery()) == catalog.listed()


class TaggingBudgets(InMemoryBudgetStore):
    """Keeps each hold's write-ahead tag, as the SQL store stores it with the hold."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, HoldTag | None] = {}

    async def reserve(self, lines, amount, tag=None):  # type: ignore[no-untyped-def]
        reservation = await super().reserve(lines, amount, tag)
        self.tags[reservation.id] = tag
        return reservation


class WatchedProvider(FakeLlmProvider):
    """Notes which holds were open when each upstream call was made."""

    def __init__(self, budgets: TaggingBudgets, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kw)
        self.budgets, self.open_at_call = budgets, []  # type: list[list[HoldTag | None]]

    async def complete(self, request, api_key):  # type: ignore[no-untyped-def]
        self.open_at_call.append([self.budgets.tags[r] for r in self.budgets.open])
        return await super().complete(request, api_key)


@pytest.mark.parametrize("kw", [
    {"api": UpstreamApi.MODERATIONS, "model": "omni-moderation-latest"},  # free: a hold on nothing
    {"client": ClientIdentity("k2", "efgh5678", BudgetLimits())},  # no budget applies
    {"use_user_key": True, "user_api_key": "sk-user-key-0000"},  # the caller pays
    {},  # budgeted
])
async def test_every_passthrough_call_is_written_ahead_as_a_hold_and_settled_by_its_row(kw):
    budgets = TaggingBudgets()
    store = InMemoryConversationStore(budgets)
    provider = WatchedProvider(budgets, usage=TokenUsage(input_tokens=10))
    use_case = HandlePassThrough(provider=provider, ledger=store, budgets=budgets,
                                 models=ModelCatalog(load_price_catalog()), policy=DefaultKeyPolicy(SERVER_KEY),
                                 clock=FakeClock())
    api = kw.pop("api", UpstreamApi.EMBEDDINGS)
    await use_case.execute(command(api, **kw))
    [open_holds] = provider.open_at_call
    assert [(t.request_id, t.route) for t in open_holds if t] == [("e1", "/v1/" + api.value)]
    assert budgets.open == {} and set(store.records) == {"e1"}
