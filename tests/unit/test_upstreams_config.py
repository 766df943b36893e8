"""UPSTREAMS_FILE: what a valid file means, and a clear start-up error (never a key) otherwise."""
from __future__ import annotations

from decimal import Decimal

import pytest

from domain.adapters.upstreams import (
    UpstreamConfigError,
    UpstreamKind,
    check_served,
    load_upstreams,
    parse_upstreams,
    served_models,
)
from domain.pricing import ModelPrice, PriceTable

ENV = {"AZ_KEY": "az-secret-value-1", "OA_KEY": "sk-secret-value-2", "SOLAR_KEY": "up-secret-value-3"}
GOOD = """
upstreams:
  - name: azure-kc
    kind: azure
    base_url: https://kc.openai.azure.com/
    api_key_env: AZ_KEY
    api_version: "2024-10-21"
    models: {gpt-4o-mini: kc-gpt-4o-mini}
  - name: openai
    kind: openai
    base_url: https://api.openai.com/v1
    api_key_env: OA_KEY
    models: [gpt-4o-mini, gpt-4o]
    priority: 1
    weight: 2
  - name: solar
    kind: openai_compatible
    base_url: http://10.0.0.5:8000/v1
    api_key_env: SOLAR_KEY
    models: [solar-pro]
"""


def error_of(text: str, env: dict[str, str] = ENV) -> str:
    with pytest.raises(UpstreamConfigError) as raised:
        parse_upstreams(text, env)
    message = str(raised.value)
    for secret in ENV.values():
        assert secret not in message
    return message


def test_a_valid_file_and_its_defaults():
    az, oa, solar = parse_upstreams(GOOD, ENV)
    assert (az.kind, az.base_url, az.api_version, az.priority, az.weight) == (
        UpstreamKind.AZURE, "https://kc.openai.azure.com", "2024-10-21", 0, 1.0)
    assert az.upstream_model("gpt-4o-mini") == "kc-gpt-4o-mini" and az.upstream_model("gpt-4o") is None
    assert az.upstream_model("gpt-4o-mini-2024-07-18", family="gpt-4o-mini") == "kc-gpt-4o-mini"
    assert oa.upstream_model("gpt-4o-mini-2024-07-18", family="gpt-4o-mini") == "gpt-4o-mini-2024-07-18"
    assert (oa.priority, oa.weight) == (1, 2.0)
    # callers' own keys: only where the kind is openai, unless the operator says otherwise
    assert (az.accepts_user_keys, oa.accepts_user_keys, solar.accepts_user_keys) == (False, True, False)
    assert az.api_key == ENV["AZ_KEY"] and ENV["AZ_KEY"] not in repr(az)
    assert served_models([az, oa, solar]) == {"gpt-4o-mini", "gpt-4o", "solar-pro"}


def test_without_a_file_one_default_upstream_serves_everything():
    (default,) = load_upstreams(None, env={}, default_base_url="http://x/v1/", default_api_key="sk-1")
    assert (default.name, default.kind, default.base_url, default.api_key) == ("default", "openai", "http://x/v1", "sk-1")
    assert default.accepts_user_keys and default.upstream_model("anything") == "anything"
    assert served_models([default]) is None
    check_served([default], ["whatever"], "EXTRA_MODELS")  # serves any model: nothing to complain about


def test_an_unknown_kind_names_the_upstream():
    message = error_of(GOOD.replace("kind: azure", "kind: azur"))
    assert "upstreams[0] (azure-kc) kind" in message and "unknown kind 'azur'" in message


def test_a_missing_key_variable_names_the_variable_not_a_value():
    message = error_of(GOOD, {k: v for k, v in ENV.items() if k != "OA_KEY"})
    assert "upstream openai: environment variable OA_KEY" in message and "not set" in message


def test_a_key_written_into_the_file_is_refused_without_echoing_it():
    text = GOOD.replace("    api_key_env: SOLAR_KEY\n", "    api_key_env: SOLAR_KEY\n    api_key: up-secret-value-3\n")
    message = error_of(text)
    assert "upstreams[2] (solar) api_key: unknown field" in message and "api_key_env" in message
    # nor in a field that expects a variable's name
    assert "api_key_env" in error_of(GOOD.replace("api_key_env: OA_KEY", "api_key_env: sk-secret-value-2"))


@pytest.mark.parametrize(("change", "expected"), [
    (("    api_version: \"2024-10-21\"\n", ""), "needs api_version"),
    (("models: [solar-pro]", "models: []"), "at least one model"),
    (("weight: 2", "weight: 0"), "weight must be greater than 0"),
    (("name: solar", "name: openai"), "upstream openai: the name is used twice"),
    (("base_url: http://10.0.0.5:8000/v1", "base_url: 10.0.0.5:8000"), "base_url must be an http"),
    (("priority: 1", "priority: first"), "upstreams[1] (openai) priority"),
])
def test_each_mistake_is_reported_with_where_it_is(change, expected):
    assert expected in error_of(GOOD.replace(*change))


def test_not_yaml_or_not_the_shape():
    assert "not valid YAML at line" in error_of("upstreams: [\n  - {name: x\n")
    assert "expected a mapping with an 'upstreams:' list" in error_of("- name: x\n")
    assert "is empty" in error_of("upstreams: []\n")


def test_a_model_served_by_nobody_is_a_start_up_error():
    upstreams = parse_upstreams(GOOD, ENV)
    check_served(upstreams, ["gpt-4o", "solar-pro"], "EXTRA_MODELS")
    with pytest.raises(UpstreamConfigError, match="EXTRA_MODELS exaone-3.5, o3: served by no upstream"):
        check_served(upstreams, ["solar-pro", "o3", "exaone-3.5"], "EXTRA_MODELS")


def test_prices_per_upstream_override_the_catalogue_where_they_serve():
    base = ModelPrice(input=Decimal("0.15"), output=Decimal("0.60"))
    azure = ModelPrice(input=Decimal("0.165"), output=Decimal("0.66"))
    solar = ModelPrice(input=Decimal("0.5"), output=Decimal("1.5"))
    table = PriceTable("v", {"gpt-4o-mini": base},
                       upstream_prices={"azure-kc": {"gpt-4o-mini": azure}, "solar": {"solar-pro": solar}})
    assert table.price_of("gpt-4o-mini", "azure-kc") == azure
    assert table.price_of("gpt-4o-mini-2024-07-18", "azure-kc") == azure  # snapshots resolve there too
    assert table.price_of("gpt-4o-mini", "openai") == base
    assert table.price_of("gpt-4o-mini") == base
    # priced only at an upstream: known to the catalogue, and priced for admission
    assert table.price_of("solar-pro") == solar and "solar-pro" in set(table.models())
    assert table.family_of("solar-pro") == "solar-pro" and table.price_of("nobody") is None


@pytest.mark.parametrize("bad", ["sk-inner\nline-secret", "sk-with space-secret", "sk-한글-secret"])
def test_a_key_a_header_cannot_carry_is_refused_at_start_without_showing_it(bad):
    """Such a key would fail every upstream call (aiohttp refuses it in a header); it is
    refused when the file is read, naming the variable, never the value."""
    with pytest.raises(UpstreamConfigError) as raised:
        parse_upstreams(GOOD, {**ENV, "OA_KEY": bad})
    message = str(raised.value)
    assert "upstream openai: environment variable OA_KEY holds a space, a control character" in message
    assert bad not in message and "secret" not in message


def test_surrounding_whitespace_of_a_key_is_dropped():
    _, oa, _ = parse_upstreams(GOOD, {**ENV, "OA_KEY": " sk-secret-value-2\n"})
    assert oa.api_key == "sk-secret-value-2"


def test_openai_api_key_setting_is_stripped_and_a_bad_one_refused_without_showing_it():
    from pydantic import ValidationError

    from chat_api.settings import ChatApiSettings

    assert ChatApiSettings(openai_api_key="sk-from-a-file\n").openai_api_key == "sk-from-a-file"
    with pytest.raises(ValidationError) as raised:
        ChatApiSettings(openai_api_key="sk-inner\nline-secret")
    assert "HTTP header cannot carry" in str(raised.value) and "line-secret" not in str(raised.value)
