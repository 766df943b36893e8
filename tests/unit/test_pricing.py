"""Costing: the price catalogue, exact per-request cost, one rounding, KRW, snapshot names.

Every expected figure below is worked out by hand from the original price table
(USD per 1M tokens) and written as a Decimal string; none is computed with the code's formula.
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from domain.adapters.prices import BUILTIN_CATALOG, load_price_catalog
from domain.money import Money
from domain.pricing import ModelPrice, PriceTable
from domain.usage import TokenUsage

# The original table (ORIGINAL_API.md): input / cached input (None: "–") / output.
ORIGINAL_TABLE = {
    "gpt-5": ("1.25", "0.125", "10"),
    "gpt-5-mini": ("0.25", "0.025", "2"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-5-chat-latest": ("1.25", "0.125", "10"),
    "gpt-4.1": ("2", "0.50", "8"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "gpt-4o": ("2.50", "1.25", "10"),
    "gpt-4o-2024-05-13": ("5", None, "15"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "o1": ("15", "7.50", "60"),
    "o1-pro": ("150", None, "600"),
    "o3": ("2", "0.50", "8"),
    "o3-pro": ("20", None, "80"),
    "gpt-3.5-turbo": ("0.50", None, "1.50"),
    "gpt-4": ("30", None, "60"),
}

# One request: 1000 input tokens of which 400 cached, 500 output tokens of which 200 are
# reasoning tokens (billed as output). Figures: (USD, millicents), by hand:
#   uncached 600 × input + cached 400 × cached + 500 × output, in USD per 1M tokens.
USAGE = TokenUsage(input_tokens=1000, cached_input_tokens=400, output_tokens=500, reasoning_tokens=200)
EXPECTED_WITH_CACHE_PRICE = {
    "gpt-5": ("0.0058", 580),          # 600*1.25 + 400*0.125 + 500*10   = 750 + 50 + 5000 = 5800
    "gpt-5-mini": ("0.00116", 116),    # 600*0.25 + 400*0.025 + 500*2    = 150 + 10 + 1000 = 1160
    "gpt-5-nano": ("0.000232", 23),    # 600*0.05 + 400*0.005 + 500*0.40 = 30 + 2 + 200 = 232 → 23.2 mc
    "gpt-5-chat-latest": ("0.0058", 580),
    "gpt-4.1": ("0.0054", 540),        # 600*2 + 400*0.50 + 500*8        = 1200 + 200 + 4000 = 5400
    "gpt-4.1-mini": ("0.00108", 108),  # 600*0.40 + 400*0.10 + 500*1.60  = 240 + 40 + 800 = 1080
    "gpt-4.1-nano": ("0.00027", 27),   # 600*0.10 + 400*0.025 + 500*0.40 = 60 + 10 + 200 = 270
    "gpt-4o": ("0.007", 700),          # 600*2.50 + 400*1.25 + 500*10    = 1500 + 500 + 5000 = 7000
    "gpt-4o-mini": ("0.00042", 42),    # 600*0.15 + 400*0.075 + 500*0.60 = 90 + 30 + 300 = 420
    "o1": ("0.042", 4200),             # 600*15 + 400*7.50 + 500*60      = 9000 + 3000 + 30000 = 42000
    "o3": ("0.0054", 540),             # as gpt-4.1
}
# No cached price: the 400 cached tokens bill at the input rate (not the original's 10%).
EXPECTED_WITHOUT_CACHE_PRICE = {
    "gpt-4o-2024-05-13": ("0.0125", 1250),  # 1000*5 + 500*15       = 5000 + 7500 = 12500
    "o1-pro": ("0.45", 45000),              # 1000*150 + 500*600    = 150000 + 300000
    "o3-pro": ("0.06", 6000),               # 1000*20 + 500*80      = 20000 + 40000
    "gpt-3.5-turbo": ("0.00125", 125),      # 1000*0.50 + 500*1.50  = 500 + 750
    "gpt-4": ("0.06", 6000),                # 1000*30 + 500*60      = 30000 + 30000
}


@pytest.fixture(scope="module")
def catalog():
    return load_price_catalog()


def test_every_original_model_is_in_the_catalogue_at_its_original_price(catalog):
    for model, (inp, cached, out) in ORIGINAL_TABLE.items():
        price = catalog.price_of(model)
        assert price is not None, model
        assert price.input == Decimal(inp), model
        assert price.output == Decimal(out), model
        assert price.cached_input == (None if cached is None else Decimal(cached)), model


def test_expected_figures_cover_the_whole_original_table():
    assert set(EXPECTED_WITH_CACHE_PRICE) | set(EXPECTED_WITHOUT_CACHE_PRICE) == set(ORIGINAL_TABLE)


@pytest.mark.parametrize(("model", "usd", "millicents"),
                         [(m, usd, mc) for m, (usd, mc) in EXPECTED_WITH_CACHE_PRICE.items()])
def test_cost_bills_cached_input_at_the_cached_rate_and_reasoning_as_output(catalog, model, usd, millicents):
    cost = catalog.cost(model, USAGE)
    assert cost is not None
    assert cost.usd == Decimal(usd)
    assert cost.millicents == millicents


@pytest.mark.parametrize(("model", "usd", "millicents"),
                         [(m, usd, mc) for m, (usd, mc) in EXPECTED_WITHOUT_CACHE_PRICE.items()])
def test_cost_of_model_without_cached_price_bills_cached_tokens_at_the_input_rate(catalog, model, usd, millicents):
    cost = catalog.cost(model, USAGE)
    assert cost is not None
    assert cost.usd == Decimal(usd)
    assert cost.millicents == millicents


def test_reasoning_tokens_do_not_add_to_the_bill(catalog):
    # They are part of output tokens: the same request with or without them costs the same.
    without = TokenUsage(input_tokens=1000, cached_input_tokens=400, output_tokens=500)
    assert catalog.cost("o3", USAGE) == catalog.cost("o3", without) == Money.from_usd("0.0054")


def test_gpt_4o_mini_example_from_the_brief(catalog):
    cost = catalog.cost("gpt-4o-mini", TokenUsage(input_tokens=1000, cached_input_tokens=400, output_tokens=500))
    assert cost == Money(420_000)  # 420 USD-per-1M → 0.00042 USD = 420 000 nano-USD
    assert cost.millicents == 42


def test_a_cheap_request_is_not_rounded_to_zero_per_token(catalog):
    # The original rounded each per-token price to whole millicents, so gpt-4o-mini cost 0.
    # 1000 uncached input tokens: 1000 * 0.15 = 150 per 1M → 0.00015 USD = 15 millicents.
    assert catalog.cost("gpt-4o-mini", TokenUsage(input_tokens=1000)).millicents == 15


def test_rounding_happens_once_per_request_not_per_component(catalog):
    # 100 input (100*0.15 = 15 → 1.5 mc) + 25 output (25*0.60 = 15 → 1.5 mc) = 30 → 3.0 mc.
    # Rounding each part half up first would give 2 + 2 = 4.
    cost = catalog.cost("gpt-4o-mini", TokenUsage(input_tokens=100, output_tokens=25))
    assert cost.usd == Decimal("0.00003")
    assert cost.millicents == 3


@pytest.mark.parametrize(("nanos", "millicents"), [
    (0, 0),
    (4_999, 0),      # 0.4999 mc
    (5_000, 1),      # 0.000005 USD = 0.5 mc → 1 (half up)
    (14_999, 1),
    (15_000, 2),     # 1.5 → 2
    (25_000, 3),     # 2.5 → 3 (half up, not half even)
    (420_000, 42),
])
def test_millicents_round_half_up(nanos, millicents):
    assert Money(nanos).millicents == millicents


def test_money_from_usd_is_exact_and_arithmetic_stays_integer():
    assert Money.from_usd("0.000005") == Money(5_000)
    assert Money.from_usd("0.000005").millicents == 1
    assert Money.from_usd(Decimal("1.5")).nanos == 1_500_000_000
    assert Money.from_usd("0.0000000005") == Money(1)  # half a nano-USD rounds up, once
    assert (Money(700) + Money(300) - Money(1_000)) == Money.zero()
    assert Money.from_usd("0.1") + Money.from_usd("0.2") == Money.from_usd("0.3")  # no float drift


def test_krw_conversion_uses_the_given_rate_to_two_decimals():
    assert Money.from_usd("0.00042").krw(Decimal("1400")) == Decimal("0.59")   # 0.588 → 0.59
    assert Money.from_usd("1").krw(Decimal("1385.5")) == Decimal("1385.50")
    assert Money.from_usd("0.0125").krw(Decimal("1380")) == Decimal("17.25")   # 0.0125*1380 = 17.25
    assert Money.from_usd("0.003").krw(Decimal("1465")) == Decimal("4.40")     # 4.395 → 4.40 (half up)


@pytest.mark.parametrize(("name", "family", "inp", "out"), [
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "0.15", "0.60"),
    ("gpt-4o-2024-08-06", "gpt-4o", "2.50", "10"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13", "5", "15"),  # priced itself, not as gpt-4o
    ("gpt-4-0613", "gpt-4", "30", "60"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini", "0.40", "1.60"),
    ("o3-2025-04-16", "o3", "2", "8"),
])
def test_snapshot_names_resolve_to_their_family(catalog, name, family, inp, out):
    price = catalog.price_of(name)
    assert price is not None
    assert (price.input, price.output) == (Decimal(inp), Decimal(out))
    assert catalog.family_of(name) == family


def test_snapshot_of_gpt_4o_2024_05_13_is_priced_at_5_and_15(catalog):
    # 1000 input + 1000 output: 5000 + 15000 = 20000 per 1M → 0.02 USD (gpt-4o would be 0.0125).
    assert catalog.cost("gpt-4o-2024-05-13", TokenUsage(input_tokens=1000, output_tokens=1000)).usd == Decimal("0.02")


@pytest.mark.parametrize("name", ["gpt-9-ultra", "my-finetune", "ft:gpt-4o-mini:acme::abc123", "gpt-9-2024-07-18", "",
                                  "gpt-4o-mini-9999", "o3-1234", "gpt-4-0999", "gpt-4o-mini-2024-13-01",
                                  "gpt-4o-mini-2024-07-18-2024-07-18", "gpt-4o-mini-2024-07-18x"])
def test_unknown_models_are_unpriced_never_priced_as_another_model(catalog, name):
    assert catalog.price_of(name) is None
    assert catalog.family_of(name) is None
    assert catalog.cost(name, USAGE) is None


def test_catalogue_is_versioned_and_lists_its_models(catalog):
    data = json.loads(BUILTIN_CATALOG.read_text(encoding="utf-8"))
    assert catalog.version
    assert catalog.version == str(data["version"])
    assert set(catalog.models()) == set(data["models"])
    assert list(catalog.models()) == sorted(data["models"])


def test_operator_catalogue_overrides_the_builtin_one(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"version": "ops-7", "models": {
        "house-model": {"input": "1.10", "cached_input": None, "output": "4.40"},
        "gpt-4o-mini": {"input": "0.20", "cached_input": "0.10", "output": "0.80", "max_output_tokens": 1000},
    }}), encoding="utf-8")
    catalog = load_price_catalog(path)
    assert catalog.version == "ops-7"
    assert catalog.price_of("gpt-4o") is None  # only what the operator's file lists
    assert catalog.price_of("gpt-4o-mini").max_output_tokens == 1000
    assert catalog.price_of("house-model").max_output_tokens == 16_384
    # 1000 input (400 cached) + 500 output: 600*0.20 + 400*0.10 + 500*0.80 = 120 + 40 + 400 = 560
    assert catalog.cost("gpt-4o-mini-2024-07-18", USAGE).usd == Decimal("0.00056")


def test_worst_case_assumes_every_input_uncached_and_every_output_token_used():
    price = ModelPrice(input=Decimal("0.15"), output=Decimal("0.60"), cached_input=Decimal("0.075"))
    # 200 * 0.15 + 1000 * 0.60 = 30 + 600 = 630 per 1M → 0.00063 USD
    assert price.worst_case(200, 1000).usd == Decimal("0.00063")


def test_token_usage_rejects_impossible_counts():
    with pytest.raises(ValueError):
        TokenUsage(input_tokens=10, cached_input_tokens=11)
    with pytest.raises(ValueError):
        TokenUsage(output_tokens=-1)
    assert TokenUsage(input_tokens=7, output_tokens=5, cached_input_tokens=3).total_tokens == 12
    assert TokenUsage(input_tokens=7, output_tokens=5, cached_input_tokens=3).uncached_input_tokens == 4


def test_the_model_catalogue_labels_by_family_and_bounds_unknown_names():
    from domain.model_catalog import ModelCatalog

    models = ModelCatalog(load_price_catalog(), ["acme-finetune", " ", "gpt-4o"])
    assert models.label("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert models.label("gpt-4-0613") == "gpt-4"
    assert models.label("gpt-4o-2024-05-13") == "gpt-4o-2024-05-13"  # priced itself
    assert models.label("acme-finetune") == "acme-finetune"
    for unknown in ("gpt-4o-mini-9999", "o3-1234", "acme-finetune-2024-07-18", None, ""):
        assert models.label(unknown) == "other"
    assert models.allows("o3-2025-04-16") and not models.allows("o3-1234")
    assert "acme-finetune" in models.listed() and " " not in models.listed()
    assert list(models.listed()) == sorted(models.listed())
    assert models.price_of("acme-finetune") is None


def test_the_model_catalogue_lists_only_what_the_upstreams_serve():
    """With routing, /v1/models is the operator's list ∩ what some upstream serves; the
    snapshot rules are unchanged for what remains, and nothing else is allowed."""
    from domain.model_catalog import ModelCatalog

    models = ModelCatalog(load_price_catalog(), ["acme-finetune", "solar-pro"],
                          served={"gpt-4o-mini", "gpt-4", "solar-pro", "not-allowed-anywhere"})
    assert models.listed() == ("gpt-4", "gpt-4o-mini", "solar-pro")
    assert models.allows("gpt-4o-mini-2024-07-18") and models.allows("gpt-4-0613")
    assert not models.allows("gpt-4o") and not models.allows("o3-2025-04-16")  # priced, served by nobody
    assert not models.allows("acme-finetune")  # allowed by the operator, served by nobody
    assert not models.allows("not-allowed-anywhere")  # served, but the operator does not allow it
    assert models.label("gpt-4o") == "other" and models.label("gpt-4-0613") == "gpt-4"
    assert models.price_of("solar-pro") is None  # an extra: unpriced
    assert ModelCatalog(load_price_catalog(), served=None).allows("gpt-4o")  # any model served


def test_per_upstream_prices_keep_the_snapshot_rules():
    base = ModelPrice(input=Decimal("30"), output=Decimal("60"))
    azure = ModelPrice(input=Decimal("33"), output=Decimal("66"))
    solar = ModelPrice(input=Decimal("0.5"), output=Decimal("1.5"))
    table = PriceTable("v", {"gpt-4": base}, snapshots={"gpt-4-0613": "gpt-4", "solar-pro-250422": "solar-pro"},
                       upstream_prices={"azure-kc": {"gpt-4": azure}, "solar": {"solar-pro": solar}})
    assert table.price_of("gpt-4-0613", "azure-kc") == azure and table.price_of("gpt-4-0613") == base
    assert table.family_of("solar-pro-250422") == "solar-pro" and table.price_of("solar-pro-250422") == solar
    assert table.family_of("solar-pro-2025-04-22") == "solar-pro"
    for minted in ("gpt-4-9999", "solar-pro-1234", "solar-pro-250422-x"):
        assert table.family_of(minted) is None and table.price_of(minted, "solar") is None
    assert sorted(table.models()) == ["gpt-4", "solar-pro"]
