"""Starting the project's services and fakes as real processes, for tests."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code < 500:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


def start(cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None,
          ready_url: str | None = None, timeout: float = 30.0) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                            cwd=ROOT, start_new_session=True)
    if ready_url:
        try:
            wait_http(ready_url, timeout, proc)
        except Exception:
            stop(proc)
            raise
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
    try:
        os.killpg(proc.pid, sig)
        return proc.wait(timeout=timeout)
    except ProcessLookupError:
        return proc.poll()
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def start_fake_openai(port: int | None = None, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    proc = start([sys.executable, str(ROOT / "tests/support/fake_openai.py"), "--port", str(port)], env=env,
                 ready_url=f"http://127.0.0.1:{port}/v1/models")
    return proc, f"http://127.0.0.1:{port}/v1"
