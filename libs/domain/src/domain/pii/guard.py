"""The PII policy: leave, mask or refuse what a request would send upstream."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain.errors import PiiDetected
from domain.pii.detect import find_pii
from domain.pii.kinds import KOREAN_NAME, PiiKind


class PiiPolicy(StrEnum):
    OFF = "off"  # send as is
    MASK = "mask"  # replace each value with a placeholder naming its kind
    BLOCK = "block"  # refuse the request (400 pii_detected)


_BY_NAME = {name: kind for kind, name in KOREAN_NAME.items()}
_PLACEHOLDER = re.compile(r"\[(" + "|".join(KOREAN_NAME.values()) + r")(\d{1,6})\]")


def pii_detected(kinds: Iterable[PiiKind]) -> PiiDetected:
    """The refusal under ``block``: the kinds found (in contract order), never a value."""
    found = set(kinds)
    return PiiDetected("pii_detected", kinds=", ".join(k.value for k in PiiKind if k in found))


class PiiScanner:
    """One request's pass over its texts, in the order they are sent.

    Under ``mask`` each value becomes ``[<kind's Korean name><n>]``: the same value (same
    digits however written, same address in any case) gets the same placeholder in every
    text of the request, and distinct values of a kind are numbered in order of appearance
    (``[카드번호1]``, ``[카드번호2]``) so the model can still tell them apart and refer to
    them. Placeholders already present (history stored masked and replayed) keep their
    numbers: new values are numbered after the highest seen, so a replayed ``[전화번호1]``
    never names a different number than before. Under ``block`` texts are returned as they
    are and :meth:`raise_if_blocked` refuses the request once every text was seen, naming
    all kinds found. Under ``off`` nothing is scanned.
    """

    def __init__(self, policy: PiiPolicy) -> None:
        self.policy = policy
        self._counts: dict[PiiKind, int] = {}
        self._placeholders: dict[tuple[PiiKind, str], str] = {}
        self._next: dict[PiiKind, int] = {}

    @property
    def counts(self) -> Mapping[PiiKind, int]:
        """Values found so far per kind (every occurrence counts)."""
        return dict(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def reserve(self, text: str) -> None:
        """Note placeholders already in ``text`` so new values are numbered after them."""
        if "[" not in text:
            return
        for m in _PLACEHOLDER.finditer(text):
            kind = _BY_NAME[m.group(1)]
            self._next[kind] = max(self._next.get(kind, 1), int(m.group(2)) + 1)

    def _placeholder(self, kind: PiiKind, key: str) -> str:
        slot = (kind, key)
        existing = self._placeholders.get(slot)
        if existing is not None:
            return existing
        number = self._next.get(kind, 1)
        self._next[kind] = number + 1
        placeholder = f"[{KOREAN_NAME[kind]}{number}]"
        self._placeholders[slot] = placeholder
        return placeholder

    def process(self, text: str, *, counted: bool = True) -> str:
        """The text as it may leave the gateway under this policy. ``counted`` False for a
        second copy of a text already processed (the prompt kept for history): its values get
        the same placeholders but are not counted again."""
        if self.policy is PiiPolicy.OFF or not text:
            return text
        return self._rewrite(text, counted=counted, mask=self.policy is PiiPolicy.MASK)

    def stored(self, text: str) -> str:
        """What may be stored of a text the request did not send (the model's reply, kept as
        history and replayed later): masked under ``mask`` and under ``block`` alike (a
        blocked conversation must not trip on a number the model wrote), never counted;
        as is under ``off``."""
        if self.policy is PiiPolicy.OFF or not text:
            return text
        return self._rewrite(text, counted=False, mask=True)

    def _rewrite(self, text: str, *, counted: bool, mask: bool) -> str:
        findings = find_pii(text)
        if not findings:
            if mask:
                self.reserve(text)
            return text
        if counted:
            for f in findings:
                self._counts[f.kind] = self._counts.get(f.kind, 0) + 1
        if not mask:
            return text
        self.reserve(text)
        parts: list[str] = []
        pos = 0
        for f in findings:
            parts.append(text[pos:f.start])
            parts.append(self._placeholder(f.kind, f.key))
            pos = f.end
        parts.append(text[pos:])
        return "".join(parts)

    def reserve_all(self, texts: Iterable[str]) -> None:
        """Under ``mask``, note the placeholders of every text of the request before any is
        rewritten, so a placeholder replayed anywhere in the request keeps its number."""
        if self.policy is PiiPolicy.MASK:
            for text in texts:
                self.reserve(text)

    def raise_if_blocked(self) -> None:
        """Under ``block``, refuse when anything was found (call after the last text)."""
        if self.policy is PiiPolicy.BLOCK and self._counts:
            raise pii_detected(self._counts)


@dataclass(frozen=True, slots=True)
class PiiResult:
    texts: list[str]
    counts: Mapping[PiiKind, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class PiiGuard:
    """The server-wide policy, overridable per client key; applied to every text a request
    sends upstream (and to the history it stores) before it leaves the gateway."""

    def __init__(self, policy: PiiPolicy = PiiPolicy.MASK) -> None:
        self.policy = policy

    def scanner(self, policy: PiiPolicy | None = None) -> PiiScanner:
        """A fresh scanner for one request (``policy`` is the client key's override)."""
        return PiiScanner(policy or self.policy)

    def apply(self, texts: Sequence[str], policy: PiiPolicy | None = None) -> PiiResult:
        """All texts of one request at once: masked texts and counts per kind, or
        :class:`PiiDetected` under ``block``. Placeholders already in any of the texts are
        reserved first, wherever they stand."""
        scanner = self.scanner(policy)
        scanner.reserve_all(texts)
        out = [scanner.process(text) for text in texts]
        scanner.raise_if_blocked()
        return PiiResult(out, scanner.counts)
