"""FastAPI dependencies, as Annotated aliases. They are ``async def`` on purpose: FastAPI
runs a plain ``def`` dependency in its thread pool, a thread hop on every request."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from chat_api.bootstrap import Container
from domain.errors import Unauthorized


async def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


async def require_admin(request: Request, container: ContainerDep) -> None:
    """Every /admin/v1 route: the admin token, compared in constant time. Client keys are
    never accepted here."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if not token or not hmac.compare_digest(token.encode(), container.admin_token.encode()):
        raise Unauthorized("invalid_admin_token")


AdminDep = Annotated[None, Depends(require_admin)]
