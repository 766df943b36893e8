"""Three fake upstreams as real processes: ``az`` (spoken to as Azure), ``oa`` (as OpenAI)
and ``cmp`` (as an OpenAI-compatible server), reset to good behaviour before each test."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_upstreams import FakeUpstream


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    started = {name: FakeUpstream(name).start() for name in ("az", "oa", "cmp")}
    yield started
    for fake in started.values():
        fake.stop()


@pytest.fixture(autouse=True)
def clean_fakes(fakes: dict[str, FakeUpstream]) -> None:
    for fake in fakes.values():
        if fake.proc is None:
            fake.start()
        fake.normal()
        fake.clear()
