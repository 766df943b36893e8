"""Stored upstream responses (Responses API objects) fetched, cancelled, deleted or listed
(their input items) by id."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from domain.client_keys import ClientIdentity
from domain.errors import NotFound
from domain.key_policy import DefaultKeyPolicy
from domain.ports import LlmProvider


@dataclass(frozen=True, slots=True)
class ResponseReference:
    """What naming a stored response in a request means: whose it is, and the context it
    brings. OpenAI bills a ``previous_response_id`` chain's whole context as input again, so
    ``context_tokens`` is that response's input plus its output (reasoning included: the
    safe side); None while it is unknown (a background response still running)."""

    owner: str | None  # ClientIdentity.owner of its creator: its key's rotation chain
    context_tokens: int | None


class ResponseOwnership(Protocol):
    """Who created an upstream response through the gateway, and the context it brings: its
    ``ResponseReference``, whose owner is the rotation chain of the key that created it
    (``ClientIdentity.owner``: the chain's first key id; None for an anonymous creator);
    None when the gateway never saw that response."""

    async def response_reference(self, response_id: str) -> ResponseReference | None: ...


class FinishedResponses(Protocol):
    """Settles a background response the caller has seen finished (its ledger row waits for
    the final usage). Never fails: a fetch is not refused because settling could not run."""

    async def observe(self, response_id: str, body: dict[str, Any]) -> None: ...


class StoredResponseAction(StrEnum):
    FETCH = "fetch"
    CANCEL = "cancel"
    DELETE = "delete"
    INPUT_ITEMS = "input_items"


@dataclass(frozen=True, slots=True)
class StoredResponseCommand:
    client: ClientIdentity
    response_id: str
    action: StoredResponseAction
    user_api_key: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)  # input items: limit, order, after, include

    def __repr__(self) -> str:  # never print the caller's key
        return f"StoredResponseCommand(response_id={self.response_id!r}, action={self.action.value})"


def response_not_found() -> NotFound:
    return NotFound("response_not_found", field="response_id")


class HandleStoredResponse:
    """The rules for a stored response:

    * only the client that created it (through the gateway) may fetch, cancel, delete it or
      list its input items — any key of the creating key's rotation chain, so a rotated key
      keeps its predecessors' responses; for anyone else it does not exist (404, nothing is
      sent upstream);
    * anonymous callers cannot be told apart, so they can do none of these;
    * the key policy picks the key, as for a chat turn (the caller's own key when it sends
      one, else the server key if this client may use it);
    * a background response seen finished (by a fetch or a cancel) is settled at once, from
      the usage in that answer, rather than at the poller's next look.
    """

    def __init__(self, *, owners: ResponseOwnership, provider: LlmProvider, policy: DefaultKeyPolicy,
                 finished: FinishedResponses | None = None) -> None:
        self._owners, self._provider, self._policy = owners, provider, policy
        self._finished = finished

    async def execute(self, cmd: StoredResponseCommand) -> dict[str, Any]:
        if cmd.client.key_id is None:
            raise response_not_found()
        reference = await self._owners.response_reference(cmd.response_id)
        if reference is None or reference.owner != cmd.client.owner:
            raise response_not_found()
        choice = self._policy.choose(use_user_key=cmd.user_api_key is not None, user_key=cmd.user_api_key,
                                     may_use_server_key=cmd.client.may_use_server_key)
        if cmd.action is StoredResponseAction.CANCEL:
            body = await self._provider.cancel_response(cmd.response_id, choice.api_key)
        elif cmd.action is StoredResponseAction.DELETE:
            return await self._provider.delete_response(cmd.response_id, choice.api_key)
        elif cmd.action is StoredResponseAction.INPUT_ITEMS:
            return await self._provider.response_input_items(cmd.response_id, choice.api_key, cmd.query)
        else:
            body = await self._provider.get_response(cmd.response_id, choice.api_key)
        if self._finished is not None:  # only a fetch or a cancel answers with the response itself
            await self._finished.observe(cmd.response_id, body)
        return body
