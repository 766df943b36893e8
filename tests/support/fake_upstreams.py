"""Several named fake upstreams (tests/support/fake_openai.py) as real processes, each on its
own port, that can be told to misbehave, stopped and started again on the same port."""
from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.processes import ROOT, free_port, start, stop


@dataclass
class FakeUpstream:
    name: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)  # FAKE_LATENCY_MS, FAKE_CHUNK_MS

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return self.root + "/v1"

    def start(self) -> FakeUpstream:
        self.proc = start([sys.executable, str(ROOT / "tests/support/fake_openai.py"), "--port", str(self.port),
                           "--name", self.name], env=self.env, ready_url=self.root + "/v1/models")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop(self.proc, sig)
            self.proc = None

    def requests(self, path_part: str = "chat/completions") -> list[dict[str, Any]]:
        return [r for r in httpx.get(self.root + "/_fake/requests").json() if path_part in r["path"]]

    def clear(self) -> None:
        httpx.delete(self.root + "/_fake/requests")

    def behave(self, **behaviour: Any) -> None:
        httpx.put(self.root + "/_fake/behaviour", json=behaviour).raise_for_status()

    def normal(self) -> None:
        httpx.delete(self.root + "/_fake/behaviour").raise_for_status()
