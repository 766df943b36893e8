"""Static checks of the container stack: compose file, Dockerfiles, env.example, nginx.conf.

No docker engine is needed: the files are parsed, and the native rendering of the nginx
template is checked with `nginx -t` when nginx is installed.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.nginx import load_renderer

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
DOCKERFILES = sorted(p for p in INFRA.glob("Dockerfile.*") if not p.name.endswith(".dockerignore"))
ONE_SHOT = {"migrate"}
# What the router sends where (location -> compose service); the rendered config must agree.
ROUTES = {"/api/v1/system/": "monitor", "/api/": "chat_api", "/v1/": "chat_api", "= /docs": "chat_api",
          "= /openapi.json": "chat_api", "/admin/": "admin_ui"}
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?\-+][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def docker_conf() -> str:
    r = load_renderer()
    return r.render(r.docker_values())


def documented_vars() -> set[str]:
    names = set()
    for line in (ROOT / "env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            names.add(m.group(1))
    return names


def locations(conf: str) -> dict[str, str]:
    """location -> upstream name it proxies to (or 'return NNN')."""
    found = {}
    for m in re.finditer(r"location\s+(\^~\s+|=\s+|~\s+)?(\S+)\s*\{(.*?)\n\s*\}", conf, re.S):
        modifier = (m.group(1) or "").strip()
        key = f"{modifier} {m.group(2)}".strip() if modifier == "=" else m.group(2)
        body = m.group(3)
        target = re.search(r"proxy_pass\s+http://([a-z_]+)", body)
        ret = re.search(r"return\s+(\d+)", body)
        found[key] = target.group(1) if target else f"return {ret.group(1)}" if ret else "?"
    return found


def upstream_ports(conf: str) -> dict[str, set[tuple[str, int]]]:
    result = {}
    for m in re.finditer(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S):
        result[m.group(1)] = {(h, int(p)) for h, p in re.findall(r"server\s+([\w.\-]+):(\d+)", m.group(2))}
    return result


def service_port(svc: dict) -> int:
    """The port a service listens on inside the network (its *_PORT env or expose)."""
    env = svc.get("environment") or {}
    for key, value in env.items():
        if key.endswith("_PORT") and key != "SERVER_PORT":
            return int(value)
    return int(str(svc["expose"][0]))


# --- compose -------------------------------------------------------------------------

def test_the_stack_has_the_expected_services(services):
    assert {"postgres", "migrate", "chat_api", "monitor", "admin_ui", "nginx", "prometheus"} <= set(services)


def test_every_long_running_service_has_a_healthcheck(services):
    for name, svc in services.items():
        if name in ONE_SHOT:
            continue
        hc = svc.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"
        assert hc.get("interval") and hc.get("retries"), f"{name}: healthcheck needs interval and retries"


def test_dependencies_wait_on_conditions(services):
    for name, svc in services.items():
        deps = svc.get("depends_on")
        if not deps:
            continue
        assert isinstance(deps, dict), f"{name}: depends_on must name conditions, not just order"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert spec.get("condition") == want, f"{name} -> {dep}: condition should be {want}"


def test_apps_start_only_after_migrations(services):
    for name in ("chat_api", "monitor", "admin_ui"):
        chain, seen = [name], set()
        # migrate directly, or through a service that waits for it
        while chain:
            cur = chain.pop()
            seen.add(cur)
            chain.extend(d for d in (services[cur].get("depends_on") or {}) if d not in seen)
        assert "migrate" in seen, f"{name} does not wait for migrate"
    assert services["migrate"]["command"] == ["llmctl", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"].get("restart") == "no"


def test_chat_api_runs_several_replicas(services):
    assert services["chat_api"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["chat_api"], "replicas cannot share a published port; nginx fronts them"


def test_only_the_router_is_published_publicly(services):
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            if name == "nginx":
                assert str(port).endswith(":8080")
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_stop_grace_period_outlasts_the_drain(services):
    for name, svc in services.items():
        if name in ONE_SHOT:
            continue
        grace = svc.get("stop_grace_period")
        assert grace, f"{name} has no stop_grace_period"
        assert int(re.fullmatch(r"(\d+)s", grace).group(1)) > 30, f"{name}: uvicorn drains for 30 s"


def test_prometheus_is_optional_and_mounts_its_config(services):
    prom = services["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    assert any(v.startswith("./prometheus:") for v in prom["volumes"])


def test_postgres_keeps_data_in_a_named_volume(compose, services):
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    volume = pg["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]


def test_third_party_images_pin_versions(services):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and tag, f"{name}: {image} has no tag"
        assert tag != "latest"
        if "build" not in svc:
            assert re.search(r"\d", tag), f"{name}: {image} does not pin a version"


def test_every_variable_is_documented_in_env_example(compose):
    used = set(VAR.findall(COMPOSE.read_text()))
    # $${X} is escaped: the container's own shell expands it.
    used -= set(re.findall(r"\$\$\{([A-Za-z_][A-Za-z0-9_]*)\}", COMPOSE.read_text()))
    undocumented = used - documented_vars()
    assert not undocumented, f"add to env.example: {sorted(undocumented)}"


def test_env_example_documents_the_services_settings():
    wanted = {"DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ADMIN_TOKEN", "KEY_HASH_SECRET", "DATA_DIR",
              "EXTRA_MODELS", "USD_KRW_RATE", "LOG_LEVEL", "FORWARDED_ALLOW_IPS", "CHAT_API_PORT", "MONITOR_PORT",
              "ADMIN_UI_PORT", "ADMIN_PASSWORD", "CHAT_API_URL", "MONITOR_URL", "SERVER_PORT", "SERVER_NAME",
              "POSTGRES_PASSWORD"}
    assert not wanted - documented_vars()


def test_env_example_commits_no_secret():
    for line in (ROOT / "env.example").read_text().splitlines():
        m = re.match(r"^([A-Z_]+)=(.*)$", line)
        if m and any(w in m.group(1) for w in ("KEY", "SECRET", "TOKEN", "PASSWORD")):
            assert m.group(2).strip() == "", f"{m.group(1)} has a value in env.example"


def test_shared_secrets_are_required_not_generated_per_replica():
    text = COMPOSE.read_text()
    for name in ("ADMIN_TOKEN", "KEY_HASH_SECRET", "POSTGRES_PASSWORD", "ADMIN_PASSWORD"):
        assert re.search(r"\$\{" + name + r":\?", text), f"{name} must be required (${{{name}:?...}})"


# --- nginx vs compose ------------------------------------------------------------------

def test_upstreams_point_at_the_services_ports(services, docker_conf):
    ups = upstream_ports(docker_conf)
    assert set(ups) == {"chat_api", "monitor", "admin_ui"}
    for upstream, servers in ups.items():
        assert upstream in services
        assert servers == {(upstream, service_port(services[upstream]))}, upstream


def test_routes_go_to_the_right_service(docker_conf):
    locs = locations(docker_conf)
    for location, service in ROUTES.items():
        assert locs.get(location) == service, f"{location} -> {locs.get(location)}, want {service}"
    for internal in ("= /metrics", "/admin/v1/"):
        assert locs.get(internal, "").startswith("return 40"), f"{internal} must be refused from outside"


def test_router_listens_where_compose_publishes(services, docker_conf):
    published = {str(p).rsplit(":", 1)[1] for p in services["nginx"]["ports"]}
    listens = set(re.findall(r"listen\s+(\d+)", docker_conf))
    assert listens == published == {"8080"}


def test_nginx_conf_has_the_required_directives(docker_conf):
    for needle in ("server_tokens off", "client_max_body_size 1m", "limit_req_status 429",
                   "limit_req_zone $binary_remote_addr", "proxy_buffering off", "proxy_read_timeout 120s",
                   "map $http_upgrade $connection_upgrade", 'proxy_set_header Connection ""',
                   "proxy_set_header X-Real-IP $remote_addr", "proxy_set_header X-Forwarded-For $remote_addr",
                   "proxy_set_header X-Forwarded-Proto $scheme", "keepalive 32", "proxy_http_version 1.1",
                   'X-Content-Type-Options "nosniff"', 'X-Frame-Options "SAMEORIGIN"', "Referrer-Policy",
                   "default_server", "return 444"):
        assert needle in docker_conf, needle


def test_nginx_holds_against_hostile_traffic(docker_conf):
    """Slow and flooding clients are bounded, and nginx's own errors are JSON (both stacks
    render this one template, so checking the docker rendering checks make dev's too)."""
    for needle in ("limit_conn_zone $binary_remote_addr", "limit_conn conn_per_ip 64", "limit_conn_status 429",
                   "client_header_timeout 10s", "client_body_timeout 10s", "send_timeout 30s",
                   "reset_timedout_connection on", "worker_connections 8192", "worker_rlimit_nofile",
                   "zone=readyz_per_ip", "zone=console_sessions", "add_header Retry-After $nginx_retry_after always",
                   "error_page 413 429 502 503 504 /_nginx_errors/openai",
                   "error_page 413 429 502 503 504 /_nginx_errors/original",
                   "error_page 413 429 502 503 504 /_nginx_errors/plain", "max_fails=3"):
        assert needle in docker_conf, needle
    locs = {m.group(1): m.group(2) for m in re.finditer(r"location\s+(?:=\s+)?(\S+)\s*\{(.*?)\n\s*\}", docker_conf,
                                                        re.S)}
    assert "limit_req zone=readyz_per_ip" in locs["/readyz"]
    assert "limit_req zone=console_sessions" in locs["/admin/_stcore/stream"]
    for target in set(re.findall(r"error_page [\d ]+ (\S+);", docker_conf)):
        assert "internal;" in locs[target] and "application/json" in locs[target], target
        # every /v1 answer carries a request id, nginx's own errors too
        assert "add_header X-Request-Id $request_id always" in locs[target], target
    # a POST already sent to one replica is never re-sent to another, and a replica's own
    # 5xx (its answer) neither retries nor marks it down
    assert re.findall(r"proxy_next_upstream ([^;]+);", docker_conf) == ["error timeout"]
    assert not re.search(r"^\s*proxy_next_upstream[^;#]*non_idempotent", docker_conf, re.M)


def test_locations_that_set_headers_repeat_the_forwarding_headers(docker_conf):
    """nginx: a location with its own proxy_set_header inherits none from the server block."""
    for m in re.finditer(r"location\s+(\S+(?:\s+\S+)?)\s*\{(.*?)\n\s*\}", docker_conf, re.S):
        body = m.group(2)
        if "proxy_set_header" in body:
            for header in ("Host $http_host", "X-Real-IP $remote_addr", "X-Forwarded-For $remote_addr",
                           "X-Forwarded-Proto $scheme"):
                assert f"proxy_set_header {header}" in body, f"location {m.group(1)} drops {header.split()[0]}"


def test_renderer_leaves_no_placeholder_and_keeps_nginx_variables():
    r = load_renderer()
    for conf in (r.render(r.docker_values(server_name="chat.example.com")),
                 r.render(r.native_values(prefix=Path("/nonexistent"), listen=1, chat_api=["127.0.0.1:2"],
                                          monitor="127.0.0.1:3", admin_ui="127.0.0.1:4"))):
        assert "@@" not in conf
        assert "$remote_addr" in conf and "$http_upgrade" in conf
    assert "server_name localhost 127.0.0.1 chat.example.com;" in r.render(r.docker_values(
        server_name="chat.example.com"))
    with pytest.raises(ValueError, match="NOPE"):
        r.render({}, template="x @@NOPE@@")


# --- Dockerfiles -----------------------------------------------------------------------

def test_there_are_dockerfiles_for_the_apps_and_the_router(services):
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile.python", "Dockerfile.nginx"} <= names
    for name, svc in services.items():
        if "build" in svc:
            assert (ROOT / svc["build"]["dockerfile"]).exists()
            assert (INFRA / svc["build"]["context"]).resolve() == ROOT


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_pinned_and_unprivileged(path):
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage: build and runtime"
    for line in froms:
        image = line.split()[1]
        assert ":" in image and not image.endswith(":latest"), line
        assert re.search(r":\S*\d", image), f"{line}: pin a version"
    users = [ln.split(None, 1)[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    # USER must come after the last FROM (it applies to the runtime stage)
    assert lines.index(froms[-1]) < max(i for i, ln in enumerate(lines) if ln.upper().startswith("USER "))


def test_python_image_carries_the_migrations():
    text = (INFRA / "Dockerfile.python").read_text()
    assert "alembic.ini" in text and "COPY alembic" in text


# --- nginx -t ------------------------------------------------------------------------------

def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if Path(p).exists()), None)


def test_native_rendering_passes_nginx_t(tmp_path):
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed")
    r = load_renderer()
    r.prepare_prefix(tmp_path)
    conf = tmp_path / "nginx.conf"
    conf.write_text(r.render(r.native_values(prefix=tmp_path, listen=18080,
                                             chat_api=["127.0.0.1:18001", "127.0.0.1:18011"],
                                             monitor="127.0.0.1:18002", admin_ui="127.0.0.1:18501",
                                             server_name="chat.example.com")))
    out = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", "stderr"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "test is successful" in out.stderr


def test_renderer_cli_writes_a_native_config(tmp_path):
    out = tmp_path / "nginx.conf"
    subprocess.run(["python3", str(ROOT / "scripts/render_nginx.py"), "--target", "native", "--prefix",
                    str(tmp_path), "--out", str(out), "--listen", "18081", "--chat-api", "127.0.0.1:1",
                    "--chat-api", "127.0.0.1:2"], check=True, timeout=30)
    text = out.read_text()
    assert "listen 18081 default_server;" in text
    assert upstream_ports(text)["chat_api"] == {("127.0.0.1", 1), ("127.0.0.1", 2)}
    assert (tmp_path / "tmp" / "proxy").is_dir()


def test_prometheus_scrapes_the_services_where_they_listen(services):
    config = INFRA / "prometheus" / "prometheus.yml"
    if not config.exists():
        pytest.skip("infra/prometheus/prometheus.yml not written yet")
    prom = yaml.safe_load(config.read_text())
    for job in prom.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, port = target.rsplit(":", 1)
                if host in services:
                    assert int(port) == service_port(services[host]), f"{job['job_name']}: {target}"
        for sd in job.get("dns_sd_configs", []):
            for name in sd.get("names", []):
                assert name in services, f"{job['job_name']}: no service {name}"
                assert int(sd["port"]) == service_port(services[name]), f"{job['job_name']}: {name}:{sd['port']}"


def test_every_chat_api_setting_is_documented_in_env_example():
    """pydantic-settings reads each field from the environment variable of the same name."""
    from chat_api.settings import ChatApiSettings

    env = (ROOT / "env.example").read_text()
    missing = [name.upper() for name in ChatApiSettings.model_fields if name.upper() not in env]
    assert not missing, missing
