"""HandlePassThrough (embeddings, moderations) and ListModels against the in-memory fakes."""
from __future__ import annotations

import pytest

from domain.adapters.fakes import FakeClock, FakeLlmProvider, InMemoryBudgetStore, InMemoryConversationStore
from domain.adapters.prices import load_price_catalog
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.errors import BudgetExceeded, InvalidInput, NotFound, UpstreamError
from domain.key_policy import DefaultKeyPolicy, FallbackReason, KeySource
from domain.ledger import Outcome
from domain.model_catalog import ModelCatalog
from domain.money import Money
from domain.ports import UpstreamApi
from domain.usage import TokenUsage
from domain.use_cases.models import ListModels, ListModelsQuery
from domain.use_cases.passthrough import HandlePassThrough, PassThroughCommand

SERVER_KEY = "sk-server-key-0000"
CAPPED = ClientIdentity("k1", "abcd1234", BudgetLimits(daily=Money.from_usd("0.001")))


class World:
    def __init__(self, tokens: int = 1000) -> None:
        self.budgets = InMemoryBudgetStore()
        self.store = InMemoryConversationStore(self.budgets)
        self.provider = FakeLlmProvider(usage=TokenUsage(input_tokens=tokens))
        self.use_case = HandlePassThrough(provider=self.provider, ledger=self.store, budgets=self.budgets,
                                          models=ModelCatalog(load_price_catalog()),
                                          policy=DefaultKeyPolicy(SERVER_KEY), clock=FakeClock())


def command(api: UpstreamApi = UpstreamApi.EMBEDDINGS, model: str = "text-embedding-3-small", tokens: int = 1000,
            **kw) -> PassThroughCommand:
    return PassThroughCommand(request_id=kw.pop("request_id", "e1"), client=kw.pop("client", CAPPED), api=api,
                              model=model, route="/v1/" + api.value, params={"input": "x"}, input_tokens=tokens, **kw)


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


async def test_an_unknown_embedding_model_is_refused():
    w = World()
    with pytest.raises(InvalidInput):
        await w.use_case.execute(command(model="my-embedder"))
    assert w.provider.calls == []


async def test_moderations_take_any_model_reserve_nothing_and_cost_zero():
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
