"""The chat routes served straight from ASGI (chat_api.hot_routes) are the router's routes:
each is declared in the router (so the OpenAPI document lists it and a request the fast path
passes by reaches the same code) with the same dialect, so the two can never drift apart."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute

from chat_api.app import make_app
from chat_api.dialects.base import Dialect
from chat_api.hot_routes import HOT
from chat_api.routes import openai, original


def _dialects_named_by(endpoint: Callable[..., Any]) -> set[int]:
    """The Dialect objects the endpoint's code refers to by global name."""
    fn: Any = inspect.unwrap(endpoint)
    names = fn.__code__.co_names
    return {id(v) for k, v in fn.__globals__.items() if k in names and isinstance(v, Dialect)}


def test_every_hot_route_is_the_declared_route_with_the_same_dialect() -> None:
    declared = {(method, r.path): r for router in (openai.router, original.router) for r in router.routes
                if isinstance(r, APIRoute) for method in r.methods}
    documented = make_app().openapi()["paths"]
    for (method, path), (dialect, _use_case) in HOT.items():
        route = declared.get((method, path))
        assert route is not None, (method, path)
        assert _dialects_named_by(route.endpoint) == {id(dialect)}, (method, path)
        assert method.lower() in documented[path], (method, path)
