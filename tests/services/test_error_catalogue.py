"""Every error the code can raise has an HTTP status and a message in both languages.

The raise sites are found by reading the source (every call of a DomainError class in the
domain library and the services), so a new code without a catalogue entry, a message naming
a parameter its raise site does not give, or an error kind without a status fails here
rather than as a bare 500 at run time.
"""
from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass
from pathlib import Path

import pytest

import domain.errors as errors_module
from chat_api.errors import ERROR_TABLE, MESSAGES, WORDS, message_of
from domain.errors import DomainError, ErrorKind

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "libs" / "domain" / "src", *sorted((ROOT / "services").glob("*/src"))]
ERROR_CLASSES = {name: cls for name, cls in vars(errors_module).items()
                 if isinstance(cls, type) and issubclass(cls, DomainError)}
NOT_PARAMS = {"reason", "retry_after", "upstream_status", "upstream_code"}
HANGUL = re.compile("[가-힣]")


@dataclass(frozen=True)
class RaiseSite:
    where: str
    cls: str
    code: str
    reason: str | None
    params: frozenset[str]

    @property
    def key(self) -> str:
        return self.code if self.reason is None else f"{self.code}/{self.reason}"


def _sites() -> list[RaiseSite]:
    sites = []
    for root in SOURCES:
        for path in root.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name not in ERROR_CLASSES:
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                code = node.args[0]
                assert isinstance(code, ast.Constant) and isinstance(code.value, str), f"{where}: a literal code"
                assert len(node.args) == 1, f"{where}: the words are the catalogue's, not the raise site's"
                reason = next((k.value for k in node.keywords if k.arg == "reason"), None)
                assert reason is None or isinstance(reason, ast.Constant), f"{where}: a literal reason"
                assert all(k.arg is not None for k in node.keywords), f"{where}: no **params splat"
                params = frozenset(str(k.arg) for k in node.keywords if k.arg not in NOT_PARAMS)
                sites.append(RaiseSite(where, name, code.value, reason.value if reason else None, params))
    return sites


SITES = _sites()


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def test_the_scan_finds_the_raise_sites():
    assert len(SITES) > 40
    assert {"invalid_json/too_deep", "budget_exceeded", "upstream_error", "invalid_field/valid_role"} <= {
        s.key for s in SITES}


def test_every_error_kind_and_class_has_a_status():
    assert set(ERROR_TABLE) == set(ErrorKind)
    for cls in ERROR_CLASSES.values():
        assert 400 <= ERROR_TABLE[cls.kind].status < 600


@pytest.mark.parametrize("site", SITES, ids=lambda s: f"{s.key}@{s.where}")
def test_every_raised_code_has_both_messages_over_the_params_it_is_given(site):
    assert site.key in MESSAGES, f"{site.where}: no message for {site.key}"
    ko, en = MESSAGES[site.key]
    assert HANGUL.search(ko) and not HANGUL.search(en), site.key
    assert _placeholders(ko) == _placeholders(en), site.key
    assert _placeholders(ko) <= site.params, f"{site.where}: {site.key} needs {_placeholders(ko) - site.params}"
    error = ERROR_CLASSES[site.cls](site.code, reason=site.reason, **{p: "x" for p in site.params if p != "field"},
                                    **({"field": "x"} if "field" in site.params else {}))
    for lang in ("ko", "en"):
        text = message_of(error, lang)
        assert text and "?" not in text and "{" not in text


def test_no_message_is_left_without_a_raise_site():
    assert set(MESSAGES) - {s.key for s in SITES} == set()


def test_parameter_words_exist_in_both_languages():
    for values in WORDS.values():
        for ko, en in values.values():
            assert HANGUL.search(ko) and not HANGUL.search(en)


def test_messages_render_the_parameters_given():
    from domain.budgets import BudgetLine, budget_exceeded

    error = budget_exceeded(BudgetLine("global", "m:2026-11", None))
    assert message_of(error, "en").startswith("The server-wide monthly budget is exhausted")
    assert message_of(error).startswith("전체 서버 월간 예산을 초과했습니다")
    from domain.errors import RateLimited

    limited = RateLimited("rate_limited", retry_after=3, limit=10, unit="tokens", seconds=4)
    assert message_of(limited, "en") == "Over the limit of 10 tokens per minute. Retry in 4 s."
    assert message_of(limited) == "분당 토큰 한도(10)를 넘었습니다. 4초 후 다시 시도하세요."
