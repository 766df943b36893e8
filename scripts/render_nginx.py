"""Render infra/nginx.conf (the one router template) for the docker or the native stack.

    python scripts/render_nginx.py --target native --out data/nginx/nginx.conf
    python scripts/render_nginx.py --target docker --out build/nginx.conf

Placeholders are ``@@NAME@@`` so nginx's own ``$variables`` pass through untouched.
Defaults come from the same environment variables the services read (CHAT_API_PORT,
MONITOR_PORT, ADMIN_UI_PORT, SERVER_PORT, SERVER_NAME, NGINX_RATE_LIMIT, NGINX_RATE_BURST,
NGINX_CONN_PER_ADDRESS, NGINX_WORKER_CONNECTIONS).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "nginx.conf"
PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
# Inside the compose network: service name -> (port the service listens on).
DOCKER_PORTS = {"chat_api": 8001, "monitor": 8002, "admin_ui": 8501}
DOCKER_LISTEN = 8080
# Docker's embedded DNS: chat_api has several replicas behind one name, re-resolved
# while running so a restarted replica with a new address is picked up.
DOCKER_RESOLVER = "resolver 127.0.0.11 valid=10s ipv6=off;"


def server_lines(addresses: list[str], *, resolve: bool = False) -> str:
    # Three failed connections in 10 s take a replica out for 10 s: one reset connection
    # (a replica restarting, a client's odd request) does not.
    suffix = " resolve" if resolve else ""
    return "\n".join(f"        server {a} max_fails=3 fail_timeout=10s{suffix};" for a in addresses)


def connection_values(conn_per_address: int, worker_connections: int) -> dict[str, str]:
    return {"CONN_PER_ADDRESS": str(conn_per_address), "WORKER_CONNECTIONS": str(worker_connections),
            "WORKER_RLIMIT_NOFILE": str(2 * worker_connections + 64)}


def server_names(extra: str | None) -> str:
    names = ["localhost", "127.0.0.1"]
    for name in (extra or "").replace(",", " ").split():
        if name not in names:
            names.append(name)
    return " ".join(names)


def render(values: dict[str, str], template: str | None = None) -> str:
    text = TEMPLATE.read_text() if template is None else template
    missing = sorted({m for m in PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise ValueError(f"no value for placeholders: {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def native_values(*, prefix: Path, listen: int, chat_api: list[str], monitor: str, admin_ui: str,
                  server_name: str | None = None, rate: str = "20r/s", burst: int = 50,
                  access_log: str | None = None, error_log: str | None = None,
                  conn_per_address: int = 64, worker_connections: int = 8192) -> dict[str, str]:
    """Loopback upstreams; pid, logs and temp files under ``prefix`` (no root needed)."""
    prefix = prefix.resolve()
    running_as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return {
        # As root nginx would drop its workers to nobody, who cannot write the temp dirs
        # made here; a developer's non-root nginx needs no user directive at all.
        "USER_DIRECTIVE": "user root;" if running_as_root else "",
        "WORKER_PROCESSES": "1",
        "PID_FILE": str(prefix / "nginx.pid"),
        "ERROR_LOG": error_log or "stderr",
        "ACCESS_LOG": access_log or str(prefix / "logs" / "access.log"),
        "TEMP_DIR": str(prefix / "tmp"),
        "RESOLVER": "",
        "LISTEN_PORT": str(listen),
        "SERVER_NAMES": server_names(server_name),
        "RATE_LIMIT_RATE": rate,
        "RATE_LIMIT_BURST": str(burst),
        "CHAT_API_SERVERS": server_lines(chat_api),
        "MONITOR_SERVERS": server_lines([monitor]),
        "ADMIN_UI_SERVERS": server_lines([admin_ui]),
        **connection_values(conn_per_address, worker_connections),
    }


def docker_values(*, server_name: str | None = None, rate: str = "20r/s", burst: int = 50,
                  conn_per_address: int = 64, worker_connections: int = 8192) -> dict[str, str]:
    """Compose service names; the unprivileged nginx image writes only under /tmp."""
    return {
        "USER_DIRECTIVE": "",
        "WORKER_PROCESSES": "auto",
        "PID_FILE": "/tmp/nginx.pid",  # noqa: S108 - inside the container, the unprivileged image's own choice
        "ERROR_LOG": "/dev/stderr",
        "ACCESS_LOG": "/dev/stdout",
        "TEMP_DIR": "/tmp",  # noqa: S108 - inside the container
        "RESOLVER": DOCKER_RESOLVER,
        "LISTEN_PORT": str(DOCKER_LISTEN),
        "SERVER_NAMES": server_names(server_name),
        "RATE_LIMIT_RATE": rate,
        "RATE_LIMIT_BURST": str(burst),
        "CHAT_API_SERVERS": server_lines([f"chat_api:{DOCKER_PORTS['chat_api']}"], resolve=True),
        "MONITOR_SERVERS": server_lines([f"monitor:{DOCKER_PORTS['monitor']}"], resolve=True),
        "ADMIN_UI_SERVERS": server_lines([f"admin_ui:{DOCKER_PORTS['admin_ui']}"], resolve=True),
        **connection_values(conn_per_address, worker_connections),
    }


def prepare_prefix(prefix: Path) -> None:
    """The directories a native nginx writes to."""
    for sub in ("logs", "tmp/client_body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=["native", "docker"], required=True)
    p.add_argument("--out", type=Path, help="write here (default: stdout)")
    p.add_argument("--prefix", type=Path, default=Path("data/nginx"), help="native: pid/logs/temp directory")
    p.add_argument("--listen", type=int, default=int(env.get("SERVER_PORT", "8080")), help="native: listen port")
    p.add_argument("--chat-api", action="append", metavar="HOST:PORT",
                   help="native: a chat_api replica (repeatable; default 127.0.0.1:$CHAT_API_PORT)")
    p.add_argument("--monitor", default=f"127.0.0.1:{env.get('MONITOR_PORT', '8002')}")
    p.add_argument("--admin-ui", default=f"127.0.0.1:{env.get('ADMIN_UI_PORT', '8501')}")
    p.add_argument("--server-name", default=env.get("SERVER_NAME"), help="extra host names to serve")
    p.add_argument("--rate", default=env.get("NGINX_RATE_LIMIT", "20r/s"), help="limit_req rate per client address")
    p.add_argument("--burst", type=int, default=int(env.get("NGINX_RATE_BURST", "50")))
    p.add_argument("--conn-per-address", type=int, default=int(env.get("NGINX_CONN_PER_ADDRESS", "64")),
                   help="requests in progress per client address (429 beyond)")
    p.add_argument("--worker-connections", type=int, default=int(env.get("NGINX_WORKER_CONNECTIONS", "8192")))
    p.add_argument("--access-log", help="native: access log path (default PREFIX/logs/access.log)")
    p.add_argument("--error-log", help="native: error log path (default stderr)")
    args = p.parse_args(argv)

    if args.target == "docker":
        values = docker_values(server_name=args.server_name, rate=args.rate, burst=args.burst,
                               conn_per_address=args.conn_per_address, worker_connections=args.worker_connections)
    else:
        chat_api = args.chat_api or [f"127.0.0.1:{env.get('CHAT_API_PORT', '8001')}"]
        prepare_prefix(args.prefix)
        values = native_values(prefix=args.prefix, listen=args.listen, chat_api=chat_api, monitor=args.monitor,
                               admin_ui=args.admin_ui, server_name=args.server_name, rate=args.rate,
                               burst=args.burst, access_log=args.access_log, error_log=args.error_log,
                               conn_per_address=args.conn_per_address, worker_connections=args.worker_connections)
    text = render(values)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
