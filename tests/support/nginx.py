"""The project's nginx renderer (scripts/render_nginx.py), loaded for tests, and a router
process started from it."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

from tests.support.processes import free_port, start

ROOT = Path(__file__).resolve().parents[2]


def load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_nginx", ROOT / "scripts" / "render_nginx.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx") if Path(p).exists()), None)


def start_router(prefix: Path, *, chat_api: list[str], monitor: str, admin_ui: str,
                 **options: object) -> tuple[subprocess.Popen, str]:
    """nginx rendered natively from infra/nginx.conf (``options`` go to ``native_values``),
    on a free loopback port; returns the process and its base URL."""
    nginx = nginx_binary()
    assert nginx, "nginx is not installed"
    renderer = load_renderer()
    renderer.prepare_prefix(prefix)
    listen = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(renderer.render(renderer.native_values(
        prefix=prefix, listen=listen, chat_api=chat_api, monitor=monitor, admin_ui=admin_ui,
        access_log=str(prefix / "access.log"), error_log=str(prefix / "error.log"), **options)))
    proc = start([nginx, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"), "-g", "daemon off;"],
                 log=prefix / "nginx.log", ready_url=f"http://127.0.0.1:{listen}/healthz")
    return proc, f"http://127.0.0.1:{listen}"
