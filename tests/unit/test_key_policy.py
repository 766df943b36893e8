"""Whose OpenAI key pays (DESIGN.md "Key policy"), rule by rule."""
from __future__ import annotations

import pytest

from domain.errors import ConfigurationError, ErrorKind, Forbidden, UpstreamError
from domain.key_policy import DefaultKeyPolicy, FallbackReason, KeyChoice, KeySource

SERVER = "sk-server-0123456789"
USER = "sk-user-SECRET-abcdef"


def upstream(status: int | None, code: str | None = None) -> UpstreamError:
    return UpstreamError("upstream_error", status=status, message="upstream error", upstream_status=status,
                         upstream_code=code)


# -- choose ---------------------------------------------------------------------------------
def test_flag_and_key_use_the_callers_key():
    choice = DefaultKeyPolicy(SERVER).choose(use_user_key=True, user_key=USER, may_use_server_key=True)
    assert (choice.source, choice.api_key, choice.fallback_reason) == (KeySource.USER, USER, None)


def test_flag_and_key_use_the_callers_key_even_when_there_is_no_server_key_or_permission():
    choice = DefaultKeyPolicy(None).choose(use_user_key=True, user_key=USER, may_use_server_key=False)
    assert (choice.source, choice.api_key) == (KeySource.USER, USER)


@pytest.mark.parametrize("missing", [None, ""])
def test_flag_without_key_falls_to_the_server_key_saying_user_key_missing(missing):
    choice = DefaultKeyPolicy(SERVER).choose(use_user_key=True, user_key=missing, may_use_server_key=True)
    assert (choice.source, choice.api_key) == (KeySource.SERVER, SERVER)
    assert choice.fallback_reason is FallbackReason.USER_KEY_MISSING
    assert choice.fallback_reason.value == "user_key_missing"


def test_no_flag_uses_the_server_key_even_when_a_key_is_sent():
    choice = DefaultKeyPolicy(SERVER).choose(use_user_key=False, user_key=USER, may_use_server_key=True)
    assert (choice.source, choice.api_key, choice.fallback_reason) == (KeySource.SERVER, SERVER, None)


@pytest.mark.parametrize("server_key", [None, ""])
@pytest.mark.parametrize(("use_user_key", "user_key"), [(False, None), (True, None), (False, USER)])
def test_no_server_key_is_a_configuration_error(server_key, use_user_key, user_key):
    with pytest.raises(ConfigurationError) as info:
        DefaultKeyPolicy(server_key).choose(use_user_key=use_user_key, user_key=user_key, may_use_server_key=True)
    assert info.value.code == "no_api_key"
    assert info.value.kind is ErrorKind.CONFIGURATION
    assert info.value.code == "no_api_key"


@pytest.mark.parametrize(("use_user_key", "user_key"), [(False, None), (True, None), (False, USER)])
def test_client_not_allowed_the_server_key_is_forbidden(use_user_key, user_key):
    with pytest.raises(Forbidden) as info:
        DefaultKeyPolicy(SERVER).choose(use_user_key=use_user_key, user_key=user_key, may_use_server_key=False)
    assert info.value.code == "server_key_not_allowed"
    assert info.value.kind is ErrorKind.FORBIDDEN


# -- fallback after the upstream refused the caller's key -------------------------------------
@pytest.mark.parametrize(("status", "code", "reason"), [
    (401, "invalid_api_key", FallbackReason.USER_KEY_REJECTED),
    (403, None, FallbackReason.USER_KEY_REJECTED),
    (429, "insufficient_quota", FallbackReason.USER_KEY_QUOTA),
])
def test_fallback_to_the_server_key_when_the_users_key_is_refused(status, code, reason):
    choice = DefaultKeyPolicy(SERVER).fallback(upstream(status, code), may_use_server_key=True)
    assert (choice.source, choice.api_key, choice.fallback_reason) == (KeySource.SERVER, SERVER, reason)


@pytest.mark.parametrize(("status", "code"), [(500, None), (429, "rate_limit_exceeded"), (429, None), (400, "bad"),
                                              (None, None)])
def test_no_fallback_when_the_request_not_the_key_failed(status, code):
    error = upstream(status, code)
    with pytest.raises(UpstreamError) as info:
        DefaultKeyPolicy(SERVER).fallback(error, may_use_server_key=True)
    assert info.value is error


def test_fallback_refused_without_a_server_key_reraises_the_upstream_error():
    error = upstream(401, "invalid_api_key")
    with pytest.raises(UpstreamError) as info:
        DefaultKeyPolicy(None).fallback(error, may_use_server_key=True)
    assert info.value is error


def test_fallback_refused_when_the_client_may_not_use_the_server_key():
    error = upstream(429, "insufficient_quota")
    with pytest.raises(UpstreamError) as info:
        DefaultKeyPolicy(SERVER).fallback(error, may_use_server_key=False)
    assert info.value is error


def test_key_choice_repr_never_contains_the_key():
    for choice in (KeyChoice(KeySource.USER, USER), KeyChoice(KeySource.SERVER, SERVER, FallbackReason.USER_KEY_QUOTA),
                   DefaultKeyPolicy(SERVER).choose(use_user_key=True, user_key=USER, may_use_server_key=True)):
        assert choice.api_key not in repr(choice)
        assert choice.api_key not in str(choice)
        assert choice.api_key not in f"{choice!r} {choice}"
        assert choice.source.value in repr(choice)
