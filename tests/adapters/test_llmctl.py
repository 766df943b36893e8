"""llmctl, the operator's console script, run as a real process."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from domain.adapters.sql.database import make_engine
from tests.support.database import migrate

LLMCTL = Path(sys.executable).parent / "llmctl"


def llmctl(*args: str, database_url: str, data_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in {"KEY_HASH_SECRET", "PRICE_CATALOG_PATH", "ADMIN_TOKEN", "OPENAI_API_KEY"}}
    env.update(DATABASE_URL=database_url, DATA_DIR=str(data_dir))
    # cwd is a scratch directory, so no .env of the repository leaks in.
    return subprocess.run([str(LLMCTL), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def migrated_pg(fresh_pg_url) -> str:
    migrate(fresh_pg_url)
    return fresh_pg_url


def test_keys_create_list_revoke_and_prices(migrated_pg, tmp_path):
    run = lambda *a: llmctl(*a, database_url=migrated_pg, data_dir=tmp_path / "data", cwd=tmp_path)  # noqa: E731

    created = run("keys", "create", "--name", "alpha-team", "--daily-usd", "2")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("llms-")
    assert len(secret) > 30 and " " not in secret
    assert (tmp_path / "data" / "key_hash_secret").exists()  # generated once under DATA_DIR

    other = run("keys", "create", "--name", "beta-team", "--monthly-usd", "10")
    assert other.returncode == 0, other.stderr
    other_secret = other.stdout.strip().splitlines()[-1]
    assert other_secret.startswith("llms-") and other_secret != secret

    listed = run("keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "alpha-team" in listed.stdout and "beta-team" in listed.stdout
    assert secret not in listed.stdout and other_secret not in listed.stdout
    assert secret[len("llms-"):] not in listed.stdout
    [alpha] = [line for line in listed.stdout.splitlines() if "alpha-team" in line]
    key_id = alpha.split()[0]
    assert re.fullmatch(r"[0-9a-f]{32}", key_id)
    assert "2.000000" in alpha and alpha.rstrip().endswith("active")

    # Only the keyed hash is stored.
    engine = make_engine(migrated_pg)
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM client_keys"))]
    finally:
        engine.dispose()
    assert len(rows) == 2
    assert secret not in repr(rows) and secret[len("llms-"):] not in repr(rows)
    [stored] = [r for r in rows if r["id"] == key_id]
    assert stored["daily_limit_nanos"] == 2_000_000_000 and stored["monthly_limit_nanos"] is None
    assert re.fullmatch(r"[0-9a-f]{64}", stored["key_hash"])

    revoked = run("keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    after = run("keys", "list").stdout
    [alpha] = [line for line in after.splitlines() if "alpha-team" in line]
    [beta] = [line for line in after.splitlines() if "beta-team" in line]
    assert alpha.rstrip().endswith("revoked") and beta.rstrip().endswith("active")

    unknown = run("keys", "revoke", "0" * 32)
    assert unknown.returncode != 0
    assert "client_key_not_found" in unknown.stderr

    prices = run("prices")
    assert prices.returncode == 0, prices.stderr
    assert "2026-11-01" in prices.stdout.splitlines()[0]
    [mini] = [line for line in prices.stdout.splitlines() if line.split()[:1] == ["gpt-4o-mini"]]
    assert mini.split()[1:] == ["0.15", "0.075", "0.60"]


def test_keys_rotate_and_expire(migrated_pg, tmp_path):
    """``keys create --expires-at``, ``keys expire ID --at ISO|never`` and ``keys rotate ID``
    (the new secret printed once, on the last line; the old key revoked; same name, caps and
    lifetime; the budget carried on). Bad input is a clear error that changes nothing."""
    from datetime import UTC, datetime, timedelta

    run = lambda *a: llmctl(*a, database_url=migrated_pg, data_dir=tmp_path / "data", cwd=tmp_path)  # noqa: E731

    def stored(key_id: str) -> dict:
        engine = make_engine(migrated_pg)
        try:
            with engine.connect() as conn:
                return dict(conn.execute(text("SELECT * FROM client_keys WHERE id = :i"), {"i": key_id}).one()._mapping)
        finally:
            engine.dispose()

    soon = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = run("keys", "create", "--name", "gamma-team", "--daily-usd", "3", "--expires-at", soon.isoformat())
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("llms-")
    [line] = [ln for ln in run("keys", "list").stdout.splitlines() if "gamma-team" in ln]
    key_id = line.split()[0]
    assert stored(key_id)["expires_at"] == soon
    assert soon.strftime("%Y-%m-%dT%H:%MZ") in line and line.rstrip().endswith("active")

    past = run("keys", "create", "--name", "late", "--expires-at", "2020-01-01")
    assert past.returncode == 2 and "invalid_expiry" in past.stderr and "llms-" not in past.stdout
    garbled = run("keys", "create", "--name", "late", "--expires-at", "next tuesday")
    assert garbled.returncode == 2 and "ISO" in garbled.stderr
    assert "late" not in run("keys", "list").stdout  # nothing was issued

    # an expiry without an offset is UTC, as in the admin API
    later = run("keys", "expire", key_id, "--at", "2099-01-02T03:04")
    assert later.returncode == 0, later.stderr
    assert stored(key_id)["expires_at"] == datetime(2099, 1, 2, 3, 4, tzinfo=UTC)
    assert "2099-01-02T03:04Z" in later.stdout
    never = run("keys", "expire", key_id, "--at", "never")
    assert never.returncode == 0 and stored(key_id)["expires_at"] is None
    assert run("keys", "expire", key_id, "--at", "2020-01-01").returncode == 2
    assert stored(key_id)["expires_at"] is None  # a refused change changes nothing
    unknown = run("keys", "expire", "0" * 32, "--at", "never")
    assert unknown.returncode == 2 and "client_key_not_found" in unknown.stderr
    assert run("keys", "expire", key_id, "--at", soon.isoformat()).returncode == 0

    rotated = run("keys", "rotate", key_id)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret.startswith("llms-") and new_secret != secret
    assert secret not in rotated.stdout and rotated.stdout.count(new_secret) == 1
    listed = run("keys", "list").stdout
    assert new_secret not in listed
    lines = [ln for ln in listed.splitlines() if "gamma-team" in ln]
    assert len(lines) == 2
    [old] = [ln for ln in lines if ln.split()[0] == key_id]
    [new] = [ln for ln in lines if ln.split()[0] != key_id]
    assert old.rstrip().endswith("revoked") and new.rstrip().endswith("active") and "3.000000" in new
    new_row = stored(new.split()[0])
    assert new_row["budget_key_id"] == key_id  # the budget carries on
    lifetime = new_row["expires_at"] - datetime.now(UTC)
    assert timedelta(days=29) < lifetime <= timedelta(days=30, minutes=1)  # the same lifetime, from now
    again = run("keys", "rotate", key_id)
    assert again.returncode == 2 and "client_key_revoked" in again.stderr and "llms-" not in again.stdout
    assert run("keys", "rotate", "0" * 32).returncode == 2

    # every change is in the audit log the console shows, by "llmctl", without a secret
    engine = make_engine(migrated_pg)
    try:
        with engine.connect() as conn:
            audit = conn.execute(text("SELECT actor, action, key_id, detail FROM admin_audit ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [(a.actor, a.action) for a in audit if a.key_id in (key_id, new.split()[0])] == [
        ("llmctl", "key_created"), ("llmctl", "expiry_changed"), ("llmctl", "expiry_changed"),
        ("llmctl", "expiry_changed"), ("llmctl", "key_rotated")]
    assert secret not in str(audit) and new_secret not in str(audit)


def test_migrate_creates_the_schema_in_an_empty_sqlite_file(tmp_path):
    db = tmp_path / "nested" / "llm.db"
    url = f"sqlite:///{db}"
    result = llmctl("migrate", database_url=url, data_dir=tmp_path / "data", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "database at head" in result.stdout
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert {"client_keys", "conversations", "turns", "spend_ledger", "budget_counters"} <= names
    assert version
    again = llmctl("migrate", database_url=url, data_dir=tmp_path / "data", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    created = llmctl("keys", "create", "--name", "local", database_url=url, data_dir=tmp_path / "data", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1].startswith("llms-")


async def test_ledger_reconcile_prints_the_drift_and_fails_on_it(migrated_pg, tmp_path):
    """Counters that equal the ledger: drift 0, exit 0. A counter moved without a row (or a
    hold counted but gone): that counter is printed with its drift, exit 1. ``sweep``
    charges a stale hold as an orphaned row and the books still balance."""
    from datetime import UTC, datetime, timedelta

    from domain.adapters.sql.ledger import write_records
    from domain.adapters.sql.repositories import SqlBudgetStore
    from domain.budgets import HoldTag, budget_lines
    from domain.client_keys import BudgetLimits
    from domain.money import Money
    from tests.adapters.test_repositories import a_record

    run = lambda *a: llmctl(*a, database_url=migrated_pg, data_dir=tmp_path / "data", cwd=tmp_path)  # noqa: E731
    engine = make_engine(migrated_pg)
    now = datetime.now(UTC)
    try:
        write_records(engine, [a_record(owner="k" * 32, at=now), a_record(owner=None, at=now)])
        await SqlBudgetStore(engine).reserve(
            budget_lines("key:" + "k" * 32, BudgetLimits(daily=Money.from_usd("1")), BudgetLimits(), now),
            Money(70_000), HoldTag("req_hold", "k" * 32, "/api/v1/chat", "gpt-4o-mini", "v"))
        balanced = run("ledger", "reconcile")
        assert balanced.returncode == 0, balanced.stdout + balanced.stderr
        assert "0 drifting; drift 0.000000000 USD" in balanced.stdout

        with engine.begin() as conn:
            conn.execute(text("UPDATE budget_counters SET spent_nanos = spent_nanos + 5000 "
                              "WHERE scope = 'anonymous' AND period LIKE 'd:%'"))
        drifting = run("ledger", "reconcile", "--since", now.date().isoformat())
        assert drifting.returncode == 1
        [line] = [ln for ln in drifting.stdout.splitlines() if ln.startswith("anonymous")]
        assert line.split()[1] == f"d:{now:%Y-%m-%d}" and line.split()[4] == "0.000005000"
        assert "1 drifting" in drifting.stdout
        tomorrow = (now + timedelta(days=40)).date().isoformat()
        assert run("ledger", "reconcile", "--since", tomorrow).returncode == 0  # later periods only
        assert run("ledger", "reconcile", "--since", "yesterday").returncode == 2  # a clear usage error

        with engine.begin() as conn:
            conn.execute(text("UPDATE budget_counters SET spent_nanos = spent_nanos - 5000 "
                              "WHERE scope = 'anonymous' AND period LIKE 'd:%'"))
        swept = run("ledger", "sweep", "--older-than", "0")
        assert swept.returncode == 0 and "charged 1 stale holds" in swept.stdout
        with engine.connect() as conn:
            assert conn.execute(text("SELECT outcome, charged_nanos FROM spend_ledger WHERE request_id = 'req_hold'")
                                ).one() == ("orphaned", 70_000)
        assert run("ledger", "reconcile").returncode == 0
    finally:
        engine.dispose()
