"""While the app serves, what startup built is out of the cyclic collector's sight and the
first generation is collected less often; on shutdown both are undone, so an app that
stopped (tests start many in one process) leaves nothing the collector cannot free."""
from __future__ import annotations

import gc
import weakref

from chat_api.app import GC_GEN0_THRESHOLD, settled_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_startup_objects_are_frozen_while_serving_and_collectable_after() -> None:
    before = gc.get_threshold()
    built_at_startup = _Node()
    alive = weakref.ref(built_at_startup)
    with settled_heap():
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
        del built_at_startup  # garbage now, but frozen: a full collection does not walk it
        gc.collect()
        assert alive() is not None
        made_while_serving = _Node()
        collected = weakref.ref(made_while_serving)
        del made_while_serving
        gc.collect()
        assert collected() is None  # what requests leave behind is still collected
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None


def test_overlapping_apps_restore_the_collector_when_the_last_one_stops() -> None:
    before = gc.get_threshold()
    first, second = settled_heap(), settled_heap()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first app stops while the second still serves
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:]) and gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
