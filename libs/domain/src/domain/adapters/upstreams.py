"""Upstreams: the servers that answer, which models each serves, in what order.

``UPSTREAMS_FILE`` (YAML) is the whole list when set::

    upstreams:
      - name: azure-kc                 # recorded in every ledger row it serves
        kind: azure                    # openai | azure | openai_compatible
        base_url: https://my-res.openai.azure.com
        api_key_env: AZURE_KC_KEY      # the key is read from this variable, never from the file
        api_version: "2024-10-21"      # azure only (required there)
        models: {gpt-4o-mini: kc-gpt-4o-mini}   # public name -> deployment; or a list of names
        priority: 0                    # lower first (default 0)
        weight: 3                      # share among upstreams of equal priority (default 1)
        accepts_user_keys: false       # callers' own keys may go here (default: kind == openai)

Without it there is one upstream named ``default`` (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``)
serving every model the operator allows, exactly as before routing existed.

Every problem is reported at start-up with the upstream it concerns, and never with a key's
value (pydantic's own messages quote the input, so they are rebuilt here from location and
reason only).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from domain.key_policy import header_safe

DEFAULT_UPSTREAM = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UpstreamKind(StrEnum):
    OPENAI = "openai"
    AZURE = "azure"
    OPENAI_COMPATIBLE = "openai_compatible"


class UpstreamConfigError(ValueError):
    """The upstreams file cannot be used; the message says where and why (never a key)."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream. ``models`` maps the public model name to the name the upstream knows it
    by (an Azure deployment, a vLLM served-model name); None means "any model" (the default
    upstream). ``api_key`` is the server's key for it (None: server-key traffic cannot use it)."""

    name: str
    kind: UpstreamKind
    base_url: str
    api_key_env: str
    models: Mapping[str, str] | None
    priority: int = 0
    weight: float = 1.0
    api_version: str | None = None
    accepts_user_keys: bool = True
    api_key: str | None = field(default=None, repr=False, compare=False)

    def upstream_model(self, model: str, family: str | None = None) -> str | None:
        """The name to send for public ``model`` (or its family, for a dated snapshot of a
        served family), or None when this upstream does not serve it."""
        if self.models is None:
            return model
        if model in self.models:
            return self.models[model]
        if family is not None and family in self.models:
            deployment = self.models[family]
            # a snapshot goes out under its own name where names are the public ones
            return model if deployment == family else deployment
        return None


class _UpstreamEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    base_url: str
    api_key_env: str
    models: list[str] | dict[str, str]
    priority: int = 0
    weight: float = 1.0
    api_version: str | None = None
    accepts_user_keys: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("a name is 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in {k.value for k in UpstreamKind}:
            raise ValueError(f"unknown kind {value[:40]!r} (expected one of: openai, azure, openai_compatible)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError("base_url must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("api_key_env names an environment variable (letters, digits, '_'); "
                             "the key itself never goes in this file")
        return value

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("weight must be greater than 0")
        return value

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        names = list(value)
        if not names:
            raise ValueError("an upstream must serve at least one model")
        if any(not str(n).strip() for n in [*names, *(value.values() if isinstance(value, dict) else [])]):
            raise ValueError("model and deployment names cannot be empty")
        if len(set(names)) != len(names):
            raise ValueError("a model is listed twice")
        return value

    @model_validator(mode="after")
    def _azure_version(self) -> _UpstreamEntry:
        if self.kind == UpstreamKind.AZURE and not self.api_version:
            raise ValueError("an azure upstream needs api_version (e.g. \"2024-10-21\")")
        return self


class _UpstreamsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upstreams: list[_UpstreamEntry]


def _describe(error: ValidationError, raw: Any) -> str:
    """Location and reason of each problem, naming the upstream; never the offending value."""
    lines = []
    for e in error.errors(include_input=False, include_url=False):
        loc = list(e["loc"])
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "upstreams" and isinstance(loc[1], int):
            entries = raw.get("upstreams") if isinstance(raw, dict) else None
            entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
            name = entry.get("name") if isinstance(entry, dict) and isinstance(entry.get("name"), str) else None
            rest = ".".join(str(p) for p in loc[2:]) or "entry"
            where = f"upstreams[{loc[1]}]" + (f" ({name[:64]})" if name else "") + f" {rest}"
        message = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown field" + (" (put the key in an environment variable and name it in api_key_env)"
                                         if "key" in str(loc[-1]).lower() else "")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def parse_upstreams(text: str, env: Mapping[str, str], source: str = "UPSTREAMS_FILE") -> list[Upstream]:
    """Parses and validates the file's text; keys are read from ``env``."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UpstreamConfigError(f"{source}: not valid YAML{at}") from None
    if not isinstance(raw, dict) or "upstreams" not in raw:
        raise UpstreamConfigError(f"{source}: expected a mapping with an 'upstreams:' list")
    try:
        parsed = _UpstreamsFile.model_validate(raw)
    except ValidationError as exc:
        raise UpstreamConfigError(f"{source}: {_describe(exc, raw)}") from None
    if not parsed.upstreams:
        raise UpstreamConfigError(f"{source}: the 'upstreams:' list is empty")
    problems: list[str] = []
    seen: set[str] = set()
    result = []
    for entry in parsed.upstreams:
        if entry.name in seen:
            problems.append(f"upstream {entry.name}: the name is used twice")
        seen.add(entry.name)
        key = (env.get(entry.api_key_env) or "").strip() or None
        if key is None:
            problems.append(f"upstream {entry.name}: environment variable {entry.api_key_env} "
                            "(its api_key_env) is not set")
        elif not header_safe(key):  # named, never shown: it is a secret
            problems.append(f"upstream {entry.name}: environment variable {entry.api_key_env} holds a space, "
                            "a control character or a non-ASCII character, which an HTTP header cannot carry")
        kind = UpstreamKind(entry.kind)
        models = dict(entry.models) if isinstance(entry.models, dict) else {m: m for m in entry.models}
        accepts = entry.accepts_user_keys if entry.accepts_user_keys is not None else kind is UpstreamKind.OPENAI
        result.append(Upstream(name=entry.name, kind=kind, base_url=entry.base_url, api_key_env=entry.api_key_env,
                               models=models, priority=entry.priority, weight=entry.weight,
                               api_version=entry.api_version, accepts_user_keys=accepts, api_key=key))
    if problems:
        raise UpstreamConfigError(f"{source}: " + "; ".join(problems))
    return result


def load_upstreams(path: str | Path | None, *, env: Mapping[str, str] | None = None,
                   default_base_url: str = "https://api.openai.com/v1",
                   default_api_key: str | None = None) -> list[Upstream]:
    """The upstreams in force: the file's list, or the single ``default`` upstream."""
    env = os.environ if env is None else env
    if not path:
        return [Upstream(name=DEFAULT_UPSTREAM, kind=UpstreamKind.OPENAI, base_url=default_base_url.rstrip("/"),
                         api_key_env="OPENAI_API_KEY", models=None, accepts_user_keys=True,
                         api_key=default_api_key or None)]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UpstreamConfigError(f"UPSTREAMS_FILE {path}: cannot be read ({exc.strerror})") from None
    return parse_upstreams(text, env, f"UPSTREAMS_FILE {path}")


def served_models(upstreams: Iterable[Upstream]) -> frozenset[str] | None:
    """The public model names the upstreams serve; None when one of them serves any model."""
    names: set[str] = set()
    for u in upstreams:
        if u.models is None:
            return None
        names.update(u.models)
    return frozenset(names)


def check_served(upstreams: Iterable[Upstream], required: Iterable[str], what: str) -> None:
    """Models the configuration names elsewhere (the default model, EXTRA_MODELS, priced
    upstreams) must be served by some upstream: a model served by nobody is a start-up error."""
    served = served_models(upstreams)
    if served is None:
        return
    missing = sorted(m for m in required if m not in served)
    if missing:
        raise UpstreamConfigError(f"{what} {', '.join(missing)}: served by no upstream in UPSTREAMS_FILE")
