"""RoutingLlmProvider against two and three fake upstreams running as real processes."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from domain.adapters.routing_provider import RoutingLlmProvider, build_routing_provider
from domain.adapters.upstreams import Upstream, UpstreamKind, parse_upstreams
from domain.errors import UpstreamBadResponse, UpstreamBusy, UpstreamError
from domain.ports import StreamDone, UpstreamApi, UpstreamRequest
from tests.support.fake_upstreams import FakeUpstream
from tests.support.processes import free_port

KEYS = {"AZ_KEY": "az-key-0001", "OA_KEY": "sk-oa-key-0002", "CMP_KEY": "sk-cmp-key-0003"}
USER_KEY = "sk-user-own-key-9999"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Attempts:
    """Records the router's attempts (a real observer, as chat_api's metrics are)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def attempt(self, upstream: str, outcome: str, seconds: float) -> None:
        self.seen.append((upstream, outcome))


def entry(fake: FakeUpstream | None, name: str, kind: str, key_env: str, models: object, **extra: object) -> str:
    base = (fake.root if kind == "azure" else fake.openai_base) if fake else f"http://127.0.0.1:{free_port()}/v1"
    fields = {"name": name, "kind": kind, "base_url": base, "api_key_env": key_env, "models": models, **extra}
    if kind == "azure":
        fields.setdefault("api_version", "2024-10-21")
    return json.dumps(fields)  # a JSON object is a YAML flow mapping


def router(*entries: str, timeout: float = 5.0, max_retries: int = 0, **routing: object) -> RoutingLlmProvider:
    upstreams = parse_upstreams("upstreams:\n" + "".join(f"  - {e}\n" for e in entries), KEYS)
    r = build_routing_provider(upstreams, timeout=timeout, connect_timeout=2.0, max_retries=max_retries,
                               backoff_base=0.01, **routing)
    r.observer = Attempts()
    return r


def chat(model: str = "gpt-4o-mini", text: str = "안녕하세요") -> UpstreamRequest:
    return UpstreamRequest(UpstreamApi.CHAT_COMPLETIONS, model, [{"role": "user", "content": text}])


def attempts(r: RoutingLlmProvider) -> list[tuple[str, str]]:
    assert isinstance(r.observer, Attempts)
    return r.observer.seen


@pytest.fixture
async def closing() -> AsyncIterator[list[RoutingLlmProvider]]:
    made: list[RoutingLlmProvider] = []
    yield made
    for r in made:
        await r.aclose()


async def test_lowest_priority_number_serves_and_the_azure_shape_is_the_sdks(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1))
    closing.append(r)
    for _ in range(10):
        reply = await r.complete(chat(), r.server_key)
        assert reply.upstream == "az"
    assert len(az.requests()) == 10 and oa.requests() == []
    seen = az.requests()[0]
    assert seen["path"] == "/openai/deployments/kc-mini/chat/completions"
    assert seen["api_version"] == "2024-10-21"
    assert (seen["auth"], seen["key"], seen["authorization"]) == ("api-key", KEYS["AZ_KEY"], None)
    assert seen["body"]["model"] == "kc-mini"  # the public name maps to the deployment
    assert reply.model == "gpt-4o-mini"  # answered as "kc-mini": recorded under the public name
    # the Responses API is not per deployment on Azure: /openai/responses, the deployment as model
    created = await r.complete(UpstreamRequest(UpstreamApi.RESPONSES, "gpt-4o-mini", [
        {"role": "user", "content": "응답 API"}]), r.server_key)
    (seen,) = az.requests("/responses")
    assert (seen["path"], seen["body"]["model"], seen["api_version"]) == ("/openai/responses", "kc-mini", "2024-10-21")
    fetched = await r.get_response(created.body["id"], r.server_key)
    assert fetched["id"] == created.body["id"] and az.requests("/responses/")[0]["auth"] == "api-key"


async def test_weights_share_requests_among_equal_priorities(fakes, closing):
    oa, cmp = fakes["oa"], fakes["cmp"]
    r = router(entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], weight=3),
               entry(cmp, "cmp", "openai_compatible", "CMP_KEY", ["gpt-4o-mini"], weight=1),
               entry(fakes["az"], "az", "azure", "AZ_KEY", ["gpt-4o-mini"], priority=5))
    closing.append(r)
    served: list[str | None] = []
    for _ in range(10):
        replies = await asyncio.gather(*(r.complete(chat(), r.server_key) for _ in range(20)))
        served += [x.upstream for x in replies]
    share = served.count("oa") / len(served)
    # expected 0.75; sd over 200 draws is 0.031, so this bound fails about once in a million
    assert 0.60 <= share <= 0.90, share
    assert served.count("oa") + served.count("cmp") == 200
    assert len(oa.requests()) == served.count("oa") and fakes["az"].requests() == []


async def test_refused_connection_moves_to_the_next_and_the_dead_one_cools_down(fakes, closing):
    oa = fakes["oa"]
    clock = ManualClock()
    r = router(entry(None, "dead", "openai", "OA_KEY", ["gpt-4o-mini"]),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), clock=clock)
    closing.append(r)
    assert (await r.complete(chat(), r.server_key)).upstream == "oa"
    assert attempts(r) == [("dead", "connection"), ("oa", "ok")]
    assert {s.name: s.circuit_open for s in r.status()} == {"dead": True, "oa": False}
    assert (await r.complete(chat(), r.server_key)).upstream == "oa"
    assert attempts(r)[2:] == [("oa", "ok")]  # cooling down: not tried at all
    clock.now += 60  # the cooldown is over: the dead one is tried (and found dead) again
    assert (await r.complete(chat(), r.server_key)).upstream == "oa"
    assert attempts(r)[3:] == [("dead", "connection"), ("oa", "ok")]


async def test_a_503_moves_to_the_next_and_recovery_brings_traffic_back(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    clock = ManualClock()
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), clock=clock)
    closing.append(r)
    az.behave(status=503)
    replies = [await r.complete(chat(), r.server_key) for _ in range(5)]
    assert [(x.upstream, x.attempts) for x in replies] == [("oa", 2)] + [("oa", 1)] * 4
    assert len(az.requests()) == 1  # one failure, then it cools down
    assert oa.requests()[0]["key"] == KEYS["OA_KEY"]  # each upstream gets its own key, never another's
    az.normal()
    clock.now += 60
    assert (await r.complete(chat(), r.server_key)).upstream == "az"
    assert {s.name: s.consecutive_failures for s in r.status()} == {"az": 0, "oa": 0}


async def test_a_429_honours_retry_after_for_that_model_only(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    clock = ManualClock()
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini", "gpt-4o": "kc-4o"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini", "gpt-4o"], priority=1), clock=clock)
    closing.append(r)
    az.behave(status=429, retry_after=30)
    assert (await r.complete(chat(), r.server_key)).upstream == "oa"
    az.normal()
    clock.now += 29
    assert (await r.complete(chat(), r.server_key)).upstream == "oa"  # still inside Retry-After
    assert (await r.complete(chat("gpt-4o"), r.server_key)).upstream == "az"  # another deployment is fine
    clock.now += 2
    assert (await r.complete(chat(), r.server_key)).upstream == "az"
    assert [a for a in attempts(r) if a[0] == "az"] == [("az", "429"), ("az", "ok"), ("az", "ok")]


async def test_a_timeout_before_the_first_byte_moves_to_the_next(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), timeout=0.5)
    closing.append(r)
    az.behave(first_byte_delay_ms=3000)
    assert (await r.complete(chat(), r.server_key)).upstream == "oa"
    events = [e async for e in r.stream(chat(), r.server_key)]
    assert isinstance(events[-1], StreamDone) and events[-1].upstream == "oa"
    assert ("az", "timeout") in attempts(r)


async def test_after_a_cooldown_one_request_at_a_time_probes_a_hanging_upstream(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    clock = ManualClock()
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), timeout=0.5, clock=clock)
    closing.append(r)
    az.behave(first_byte_delay_ms=3000)
    assert (await r.complete(chat(), r.server_key)).upstream == "oa"
    clock.now += 60
    replies = await asyncio.gather(*(r.complete(chat(), r.server_key) for _ in range(5)))
    assert [x.upstream for x in replies] == ["oa"] * 5
    assert len(az.requests()) == 2  # the first failure, then a single probe for the five
    assert attempts(r).count(("az", "timeout")) == 2


async def test_a_started_stream_never_switches_upstream(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1))
    closing.append(r)
    az.behave(cut_stream_after=2)
    received = []
    with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises, it must reach the caller
        async for event in r.stream(chat(text="하나 둘 셋 넷 다섯"), r.server_key):
            received.append(event)
    assert received and not any(isinstance(e, StreamDone) for e in received)
    assert oa.requests() == []
    assert len(az.requests()) == 1


async def test_a_callers_key_never_reaches_an_openai_compatible_upstream(fakes, closing):
    cmp, oa = fakes["cmp"], fakes["oa"]
    r = router(entry(cmp, "cmp", "openai_compatible", "CMP_KEY", ["gpt-4o-mini", "solar-pro"]),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1))
    closing.append(r)
    # the compatible server is first in line, yet the caller's key goes to OpenAI
    assert (await r.complete(chat(), USER_KEY)).upstream == "oa"
    events = [e async for e in r.stream(chat(), USER_KEY)]
    assert isinstance(events[-1], StreamDone) and events[-1].upstream == "oa"
    assert [q["key"] for q in oa.requests()] == [USER_KEY, USER_KEY]
    # a model only the compatible server has: refused as a rejected key, nothing sent
    with pytest.raises(UpstreamError) as refused:
        await r.complete(chat("solar-pro"), USER_KEY)
    assert refused.value.code == "user_key_not_accepted" and refused.value.rejects_key
    # the server's traffic uses it, with its own key
    assert (await r.complete(chat("solar-pro"), r.server_key)).upstream == "cmp"
    seen = json.dumps(cmp.requests("")) + json.dumps(fakes["az"].requests(""))
    assert USER_KEY not in seen
    assert [q["key"] for q in cmp.requests()] == [KEYS["CMP_KEY"]]


async def test_an_operator_may_let_callers_keys_through_to_a_compatible_upstream(fakes, closing):
    cmp = fakes["cmp"]
    r = router(entry(cmp, "cmp", "openai_compatible", "CMP_KEY", ["solar-pro"], accepts_user_keys=True))
    closing.append(r)
    assert (await r.complete(chat("solar-pro"), "sk-solar-user")).upstream == "cmp"
    assert cmp.requests()[0]["key"] == "sk-solar-user"


async def test_a_refusal_of_the_request_itself_does_not_fail_over(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    bad = {**KEYS, "AZ_KEY": "az-invalid-key"}
    upstreams = parse_upstreams("upstreams:\n" + "".join(f"  - {e}\n" for e in (
        entry(az, "az", "azure", "AZ_KEY", ["gpt-4o-mini"]),
        entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1))), bad)
    r = build_routing_provider(upstreams, timeout=5)
    closing.append(r)
    with pytest.raises(UpstreamError) as refused:
        await r.complete(chat(), r.server_key)
    # the server's key refused: said so without the upstream's body (which quotes the key)
    assert refused.value.code == "upstream_key_refused" and refused.value.body is None
    assert refused.value.upstream == "az"
    assert oa.requests() == []


async def test_when_every_upstream_fails_the_last_error_comes_back_after_bounded_rounds(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", ["gpt-4o-mini"]),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), max_retries=1)
    closing.append(r)
    az.behave(status=503)
    oa.behave(status=502)
    with pytest.raises(UpstreamError) as failed:
        await r.complete(chat(), r.server_key)
    assert failed.value.upstream_status in (502, 503)
    assert len(az.requests()) == 2 and len(oa.requests()) == 2  # two rounds, each upstream once a round


async def test_a_stored_response_is_fetched_from_the_upstream_that_made_it(fakes, closing):
    oa, cmp = fakes["oa"], fakes["cmp"]
    r = router(entry(cmp, "cmp", "openai_compatible", "CMP_KEY", ["gpt-4o-mini"]),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1))
    closing.append(r)
    cmp.behave(status=500)
    request = UpstreamRequest(UpstreamApi.RESPONSES, "gpt-4o-mini", [{"role": "user", "content": "저장"}])
    reply = await r.complete(request, r.server_key)
    assert reply.upstream == "oa"
    cmp.normal()
    cmp.clear()
    body = await r.get_response(reply.body["id"], r.server_key)
    assert body["id"] == reply.body["id"]
    assert cmp.requests("") == []


async def test_a_client_over_its_share_is_refused_once_for_all_upstreams(fakes, closing):
    """The share of calls in flight is the client's over every upstream: over it, a 429
    ``UpstreamBusy`` before any upstream is tried, no failover, no upstream marked unhealthy,
    and other clients unaffected."""
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1),
               max_connections=4, client_share=0.25)  # one call in flight per client
    closing.append(r)
    held = r.stream(replace(chat(), client="key-a"), r.server_key)
    assert not isinstance(await anext(held), StreamDone)  # key-a's one slot, held by an open stream
    with pytest.raises(UpstreamBusy) as refused:
        await r.complete(replace(chat(), client="key-a"), r.server_key)
    assert refused.value.upstream_status == 429 and refused.value.params == {"max": 1}
    assert len(az.requests()) == 1 and oa.requests() == []  # only the stream reached an upstream
    assert (await r.complete(replace(chat(), client="key-b"), r.server_key)).upstream == "az"
    assert {s.name: s.consecutive_failures for s in r.status()} == {"az": 0, "oa": 0}
    async for _ in held:  # the stream ends: its slot is free again
        pass
    assert (await r.complete(replace(chat(), client="key-a"), r.server_key)).upstream == "az"


async def test_an_unreadable_answer_is_not_retried_elsewhere(fakes, closing):
    """The upstream answered (it may have billed the call): the caller gets 502
    upstream_bad_response from it, and no other upstream is asked."""
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), max_retries=2)
    closing.append(r)
    with pytest.raises(UpstreamBadResponse) as bad:
        await r.complete(chat(text="fake:not-json"), r.server_key)
    assert bad.value.upstream == "az" and bad.value.attempts == 1
    assert len(az.requests()) == 1 and oa.requests() == []
    assert attempts(r) == [("az", "bad_response")]


async def test_a_stored_response_is_deleted_and_its_input_items_read_at_the_upstream_that_made_it(fakes, closing):
    oa, cmp = fakes["oa"], fakes["cmp"]
    r = router(entry(cmp, "cmp", "openai_compatible", "CMP_KEY", ["gpt-4o-mini"]),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1))
    closing.append(r)
    cmp.behave(status=500)
    request = UpstreamRequest(UpstreamApi.RESPONSES, "gpt-4o-mini", [{"role": "user", "content": "지울 응답"}])
    reply = await r.complete(request, r.server_key)
    assert reply.upstream == "oa"
    cmp.normal()
    cmp.clear()
    items = await r.response_input_items(reply.body["id"], r.server_key, {"limit": "5"})
    assert items["object"] == "list"
    deleted = await r.delete_response(reply.body["id"], r.server_key)
    assert deleted["id"] == reply.body["id"] and deleted["deleted"] is True
    assert cmp.requests("") == []  # never asked the upstream that did not make it
    (listed,) = oa.requests("/input_items")
    assert listed["key"] == KEYS["OA_KEY"]


async def test_models_are_what_the_upstreams_serve_and_one_away_is_left_out(fakes, closing):
    """Configured upstreams list their public names without a call; the default upstream
    (any model) is asked with its own key, and while it cannot answer the others still list."""
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini", "gpt-4o": "kc-4o"}))
    closing.append(r)
    assert await r.list_models(r.server_key) == ["gpt-4o", "gpt-4o-mini"]
    assert az.requests("") == []
    default = Upstream(name="default", kind=UpstreamKind.OPENAI, base_url=oa.openai_base, api_key_env="OA_KEY",
                       models=None, priority=1, api_key=KEYS["OA_KEY"])
    both = build_routing_provider([*parse_upstreams("upstreams:\n  - " + entry(
        az, "az", "azure", "AZ_KEY", {"solar-pro": "kc-solar"}) + "\n", KEYS), default], timeout=5.0,
        connect_timeout=2.0, max_retries=0)
    closing.append(both)
    listed = await both.list_models(both.server_key)
    assert "solar-pro" in listed and "gpt-4o-mini" in listed  # the fake lists every name it answers for
    assert oa.requests("/models")[0]["key"] == KEYS["OA_KEY"]
    oa.behave(status=503)
    assert await both.list_models(both.server_key) == ["solar-pro"]


async def test_a_client_retrying_itself_gets_one_round_each_upstream_once(fakes, closing):
    az, oa = fakes["az"], fakes["oa"]
    r = router(entry(az, "az", "azure", "AZ_KEY", {"gpt-4o-mini": "kc-mini"}),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), max_retries=2)
    closing.append(r)
    az.behave(status=503)
    oa.behave(status=502)
    with pytest.raises(UpstreamError):
        await r.complete(replace(chat(), retries=False), r.server_key)
    assert len(az.requests()) == 1 and len(oa.requests()) == 1


# -- one client's failures cool an upstream down for that client only -------------------------
@pytest.mark.parametrize("poison", ["fake-500", "fake-slow"])
async def test_one_clients_failures_never_cool_an_upstream_down_for_the_others(fakes, closing, poison):
    """Client A sends requests only the primary serves and the primary chokes on (a 500 every
    time, or a generation longer than the timeout), again and again: A's own requests learn
    to avoid it, but client B's next request still goes to the primary first. When several
    clients fail there (a real outage), everyone fails over."""
    oa, cmp = fakes["oa"], fakes["cmp"]
    clock = ManualClock()
    r = router(entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini", poison]),
               entry(cmp, "cmp", "openai_compatible", "CMP_KEY", ["gpt-4o-mini"], priority=1),
               timeout=0.5, clock=clock)
    closing.append(r)
    for _ in range(6):  # past the breaker's threshold too: A's own circuit opens, nobody else's
        with pytest.raises(UpstreamError):
            await r.complete(replace(chat(poison), client="A"), r.server_key)
    mine = replace(chat(), client="A")
    assert (await r.complete(mine, r.server_key)).upstream == "cmp"  # A avoids the primary for a while
    seen = len(attempts(r))
    reply = await r.complete(replace(chat(), client="B"), r.server_key)
    assert (reply.upstream, reply.attempts) == ("oa", 1)
    assert attempts(r)[seen:] == [("oa", "ok")]
    assert {s.name: s.circuit_open for s in r.status()} == {"oa": False, "cmp": False}

    # a real outage: two clients fail there, and B fails over without trying it
    oa.behave(status=503)
    for who in ("C", "D"):
        assert (await r.complete(replace(chat(), client=who), r.server_key)).upstream == "cmp"
    seen = len(attempts(r))
    assert (await r.complete(replace(chat(), client="B"), r.server_key)).upstream == "cmp"
    assert attempts(r)[seen:] == [("cmp", "ok")]
    assert {s.name: s.circuit_open for s in r.status()} == {"oa": True, "cmp": False}


async def test_a_refused_connection_cools_an_upstream_down_for_everyone_at_once(fakes, closing):
    """Nothing of a request was sent when the connection is refused (or the name does not
    resolve): no client's doing, so the first one that meets it spares the others."""
    oa = fakes["oa"]
    r = router(entry(None, "dead", "openai", "OA_KEY", ["gpt-4o-mini"]),
               entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), clock=ManualClock())
    closing.append(r)
    assert (await r.complete(replace(chat(), client="A"), r.server_key)).upstream == "oa"
    assert (await r.complete(replace(chat(), client="B"), r.server_key)).upstream == "oa"
    assert attempts(r) == [("dead", "connection"), ("oa", "ok"), ("oa", "ok")]


async def test_a_callers_own_key_out_of_rate_never_cools_the_model_down_for_others(fakes, closing):
    """A 429 for a caller's own key is about that key: the server key's traffic still goes
    to the primary."""
    oa, cmp = fakes["oa"], fakes["cmp"]
    clock = ManualClock()
    r = router(entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"]),
               entry(cmp, "cmp", "openai_compatible", "CMP_KEY", ["gpt-4o-mini"], priority=1,
                     accepts_user_keys=True), clock=clock)
    closing.append(r)
    oa.behave(status=429, retry_after=30)
    assert (await r.complete(replace(chat(), client="A"), USER_KEY)).upstream == "cmp"
    oa.normal()
    reply = await r.complete(replace(chat(), client="B"), r.server_key)
    assert reply.upstream == "oa"


async def test_a_name_that_never_resolves_fails_over_within_the_connect_timeout(fakes, closing):
    """A name server that never answers: the lookup is bounded by the connect timeout (not the
    read timeout), the request moves on as after a refused connection, and the upstream cools
    down for everyone (nothing was sent: no client's doing)."""
    from tests.adapters.test_openai_provider import HangingResolver

    oa = fakes["oa"]
    resolver = HangingResolver()
    hanging = json.dumps({"name": "far", "kind": "openai", "base_url": "http://upstream.invalid/v1",
                          "api_key_env": "OA_KEY", "models": ["gpt-4o-mini"]})
    r = router(hanging, entry(oa, "oa", "openai", "OA_KEY", ["gpt-4o-mini"], priority=1), timeout=120.0,
               clock=ManualClock(), resolver=resolver)
    closing.append(r)
    # (the guard only turns a regression into a failure instead of a two-minute hang)
    reply = await asyncio.wait_for(r.complete(replace(chat(), client="A"), r.server_key), 20)
    assert reply.upstream == "oa" and resolver.asked == 1
    assert (await r.complete(replace(chat(), client="B"), r.server_key)).upstream == "oa"
    assert attempts(r) == [("far", "connection"), ("oa", "ok"), ("oa", "ok")]
