"""Precision and recall of the PII detectors per kind on the labelled corpus
(tests/fixtures/pii/corpus.jsonl, built by tests/fixtures/pii/build_corpus.py): Korean support
tickets, chat, code and invoices with every kind of value and near-misses (dates, prices,
order, invoice and tracking numbers, URLs with numbers, code). A hit is the exact span and
kind the mask would replace. Run with -s to see the table."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from domain.pii import PiiGuard, PiiKind, PiiPolicy, find_pii

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "pii"
CORPUS = DATA / "corpus.jsonl"
MIN_RECALL, MIN_PRECISION = 0.99, 0.98


def load() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]


def table(rows: list[dict]) -> tuple[dict[str, tuple[int, int, int]], list[str]]:
    tp, fp, fn = Counter(), Counter(), Counter()
    misses = []
    for row in rows:
        expected = {(s["start"], s["end"], s["kind"]) for s in row["spans"]}
        got = {(f.start, f.end, f.kind.value) for f in find_pii(row["text"])}
        for hit in expected & got:
            tp[hit[2]] += 1
        for s, e, kind in got - expected:
            fp[kind] += 1
            misses.append(f"false positive {kind}: {row['text'][s:e]!r} in {row['text']!r}")
        for s, e, kind in expected - got:
            fn[kind] += 1
            misses.append(f"missed {kind}: {row['text'][s:e]!r} in {row['text']!r}")
    return {k.value: (tp[k.value], fp[k.value], fn[k.value]) for k in PiiKind}, misses


def render(counts: dict[str, tuple[int, int, int]]) -> str:
    lines = [f"{'kind':16}{'values':>7}{'found':>7}{'tp':>5}{'fp':>4}{'fn':>4}{'precision':>11}{'recall':>8}"]
    for kind, (tp, fp, fn) in counts.items():
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        lines.append(f"{kind:16}{tp + fn:>7}{tp + fp:>7}{tp:>5}{fp:>4}{fn:>4}{precision:>11.3f}{recall:>8.3f}")
    return "\n".join(lines)


def test_the_corpus_is_large_varied_and_reproducible(tmp_path):
    rows = load()
    assert len(rows) >= 300
    per_kind = Counter(s["kind"] for row in rows for s in row["spans"])
    assert set(per_kind) == {k.value for k in PiiKind}
    assert min(per_kind.values()) >= 40, per_kind
    near_misses = [row for row in rows if not row["spans"]]
    assert len(near_misses) >= 250
    assert {row["category"] for row in rows} == {"ticket", "chat", "code", "invoice"}
    # The committed file is exactly what the seeded builder writes.
    out = tmp_path / "corpus.jsonl"
    subprocess.run([sys.executable, str(DATA / "build_corpus.py"), str(out)], check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == CORPUS.read_text(encoding="utf-8")


def test_precision_and_recall_per_kind():
    counts, misses = table(load())
    report = render(counts)
    print("\nPII corpus:", CORPUS.name, "\n" + report)
    for kind, (tp, fp, fn) in counts.items():
        assert tp / (tp + fn) >= MIN_RECALL, f"{kind} recall\n{report}\n" + "\n".join(misses)
        assert tp / (tp + fp) >= MIN_PRECISION, f"{kind} precision\n{report}\n" + "\n".join(misses)


def test_masking_the_corpus_leaves_no_labelled_value_and_touches_no_near_miss():
    guard = PiiGuard(PiiPolicy.MASK)
    for row in load():
        result = guard.apply([row["text"]])
        masked = result.texts[0]
        for s in row["spans"]:
            assert row["text"][s["start"]:s["end"]] not in masked, (row["text"], masked)
        assert result.total == len(row["spans"]), (row["text"], masked)
        if not row["spans"]:
            assert masked == row["text"]
