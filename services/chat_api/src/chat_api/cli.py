"""llmctl: operator commands (migrations, client keys, prices, upstreams, ledger checks)."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from chat_api.errors import message_of
from chat_api.settings import ChatApiSettings
from chat_api.upstream_config import configured_upstreams
from domain.adapters.clock import SystemClock
from domain.adapters.prices import load_price_catalog
from domain.adapters.routing_provider import probe_upstream
from domain.adapters.secret_files import load_or_create_secret
from domain.adapters.sql.database import default_database_url, make_engine, normalize_url
from domain.adapters.sql.ledger import sweep_stale_holds
from domain.adapters.sql.operator_records import SqlAuditLog
from domain.adapters.sql.reconcile import reconcile
from domain.adapters.sql.repositories import SqlClientKeyRepository
from domain.adapters.upstreams import UpstreamConfigError
from domain.audit import AuditAction, AuditEntry
from domain.client_keys import BudgetLimits
from domain.errors import DomainError
from domain.money import Money
from domain.pii import PiiPolicy
from domain.use_cases.client_keys import IssueClientKey, RevokeClientKey, RotateClientKey, SetClientKeyExpiry


def find_alembic_ini() -> Path:
    """ALEMBIC_CONFIG, or alembic.ini in the working directory or above this package."""
    if os.environ.get("ALEMBIC_CONFIG"):
        return Path(os.environ["ALEMBIC_CONFIG"])
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        if (base / "alembic.ini").exists():
            return base / "alembic.ini"
    raise SystemExit("alembic.ini not found: run from the repository or set ALEMBIC_CONFIG")


def migrate(url: str | None = None) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(find_alembic_ini()))
    cfg.attributes["url"] = normalize_url(url or default_database_url())
    command.upgrade(cfg, "head")


def _budget_usd(value: str | None) -> Decimal | None:
    """A budget cap typed on the command line, in USD (None: uncapped); refuses bad input."""
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise SystemExit(f"not a USD amount: {value}") from None
    if amount < 0:
        raise SystemExit("a budget cannot be negative")
    return amount


def _fmt(money: Money | None) -> str:
    return "-" if money is None else f"${money.usd_rounded(6)}"


NEVER = "never"


def _expiry(value: str) -> datetime | None:
    """An expiry typed on the command line: an ISO date or time (UTC when no offset is
    given, as in the admin API), or ``never``."""
    if value.strip().lower() == NEVER:
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or time (e.g. 2026-12-31T15:00+09:00) or '{NEVER}': {value}") from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _when(at: datetime | None) -> str:
    """A moment as UTC to the minute (``-`` for none)."""
    if at is None:
        return "-"
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).strftime("%Y-%m-%dT%H:%MZ")


def _expiry_line(at: datetime | None, settings: ChatApiSettings) -> str:
    if at is None:
        return "it never expires"
    local = at.astimezone(settings.tz)
    return f"it expires at {_when(at)} ({local:%Y-%m-%d %H:%M} {settings.budget_timezone})"


ACTOR = "llmctl"  # the audit log's actor for changes made here


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _keys(args: argparse.Namespace, settings: ChatApiSettings) -> None:
    engine = make_engine(settings.database_url)
    repo = SqlClientKeyRepository(engine)
    clock = SystemClock()

    def audit(action: AuditAction, key_id: str, detail: dict[str, str | None]) -> None:
        # the same log the admin API writes: the console shows changes made here too
        SqlAuditLog(engine, None).append_now(AuditEntry(clock.now(), ACTOR, action, key_id, detail))  # type: ignore[arg-type]

    try:
        if args.keys_cmd == "create":
            secret = load_or_create_secret(settings.secret_file("key_hash_secret"), settings.key_hash_secret)
            issued = await IssueClientKey(repo, clock, secret.encode()).execute(
                args.name, BudgetLimits.from_usd(_budget_usd(args.daily_usd), _budget_usd(args.monthly_usd)),
                may_use_server_key=not args.no_server_key,
                pii_policy=PiiPolicy(args.pii_policy) if args.pii_policy else None, expires_at=args.expires_at)
            audit(AuditAction.KEY_CREATED, issued.key.id, {
                "name": issued.key.name, "daily_limit_usd": args.daily_usd, "monthly_limit_usd": args.monthly_usd,
                "may_use_server_key": str(not args.no_server_key).lower(), "pii_policy": args.pii_policy,
                "expires_at": _iso(args.expires_at)})
            if args.expires_at is not None:
                print(_expiry_line(args.expires_at, settings))
            print(f"created client key {issued.key.short_id} ({issued.key.name}); it is shown once:")
            print(issued.secret)
        elif args.keys_cmd == "list":
            now = clock.now()
            print(f"{'id':<34}{'short_id':<10}{'name':<24}{'daily':>14}{'monthly':>14}  {'pii':<9}"
                  f"{'expires (UTC)':<19}state")
            for k in await repo.list():
                state = "revoked" if k.revoked else "expired" if k.expired(now) else "active"
                pii = k.pii_policy.value if k.pii_policy else "server"  # server: PII_POLICY applies
                print(f"{k.id:<34}{k.short_id:<10}{k.name[:23]:<24}{_fmt(k.limits.daily):>14}"
                      f"{_fmt(k.limits.monthly):>14}  {pii:<9}{_when(k.expires_at):<19}{state}")
        elif args.keys_cmd == "revoke":
            await RevokeClientKey(repo, clock).execute(args.key_id)
            revoked = await repo.get(args.key_id)
            audit(AuditAction.KEY_REVOKED, args.key_id, {"name": revoked.name if revoked else None})
            print(f"revoked {args.key_id}")
        elif args.keys_cmd == "expire":
            before = await repo.get(args.key_id)
            await SetClientKeyExpiry(repo, clock).execute(args.key_id, args.at)
            audit(AuditAction.EXPIRY_CHANGED, args.key_id, {
                "name": before.name if before else None,
                "expires_at_before": _iso(before.expires_at) if before else None, "expires_at": _iso(args.at)})
            print(f"{args.key_id}: {_expiry_line(args.at, settings)} "
                  f"(running replicas apply it within AUTH_CACHE_SECONDS)")
        elif args.keys_cmd == "rotate":
            secret = load_or_create_secret(settings.secret_file("key_hash_secret"), settings.key_hash_secret)
            rotated = await RotateClientKey(repo, clock, secret.encode()).execute(args.key_id)
            new = rotated.issued.key
            audit(AuditAction.KEY_ROTATED, new.id, {"name": new.name, "previous_key_id": rotated.previous.id,
                                                    "previous_short_id": rotated.previous.short_id})
            print(f"revoked {rotated.previous.id} ({rotated.previous.short_id}); running replicas refuse it "
                  f"within AUTH_CACHE_SECONDS")
            print(f"its budget carries on: today's and this month's spend count against the new key's caps; "
                  f"{_expiry_line(new.expires_at, settings)}")
            print(f"created client key {new.short_id} ({new.name}) in its place; it is shown once:")
            print(rotated.issued.secret)
    finally:
        engine.dispose()


def _since(value: str) -> datetime:
    """An ISO date or time (UTC when no offset is given)."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {value}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _usd_exact(nanos: int) -> str:
    """Nano-USD as USD text to 9 places: exact, so a drift of one nano-USD shows."""
    return f"{Decimal(nanos) / Decimal(10**9):.9f}"


def _ledger(args: argparse.Namespace, settings: ChatApiSettings) -> int:
    engine = make_engine(settings.database_url)
    try:
        if args.ledger_cmd == "sweep":
            older = args.older_than if args.older_than is not None else settings.stale_hold_seconds
            charged = sweep_stale_holds(engine, datetime.now(UTC) - timedelta(seconds=older), tz=settings.tz)
            print(f"charged {charged} stale holds as orphaned ledger rows")
            return 0
        drifts = reconcile(engine, args.since, settings.tz)
    finally:
        engine.dispose()
    off = [d for d in drifts if d.spent_drift or d.held_drift]
    print(f"{'scope':<40}{'period':<14}{'counter_usd':>16}{'ledger_usd':>16}{'drift_usd':>16}{'held_drift_usd':>16}")
    for d in off if not args.all else drifts:
        print(f"{d.scope:<40}{d.period:<14}{_usd_exact(d.counter_spent):>16}{_usd_exact(d.ledger_spent):>16}"
              f"{_usd_exact(d.spent_drift):>16}{_usd_exact(d.held_drift):>16}")
    total = sum(abs(d.spent_drift) + abs(d.held_drift) for d in drifts)
    print(f"checked {len(drifts)} counters; {len(off)} drifting; drift {_usd_exact(total)} USD")
    return 1 if off else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="llmctl", description="LLM Server operator commands")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    keys = sub.add_parser("keys", help="client keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = keys_sub.add_parser("create", help="issue a key (printed once, on the last line)")
    create.add_argument("--name", required=True)
    create.add_argument("--daily-usd")
    create.add_argument("--monthly-usd")
    create.add_argument("--no-server-key", action="store_true", help="the key may only use callers' own OpenAI keys")
    create.add_argument("--pii-policy", choices=[p.value for p in PiiPolicy],
                        help="personal data in this key's requests: off, mask or block (default: PII_POLICY)")
    create.add_argument("--expires-at", type=_expiry, default=None, metavar="ISO",
                        help="refused (401 client_key_expired) from this moment on; ISO date or time, "
                             "UTC when no offset is given (default: never)")
    keys_sub.add_parser("list", help="list keys (never their secrets)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    rotate = keys_sub.add_parser("rotate", help="replace a key by a new one with the same name, caps, permission, "
                                                "PII policy, lifetime and budget; the old key is revoked "
                                                "(the new key is printed once, on the last line)")
    rotate.add_argument("key_id")
    expire = keys_sub.add_parser("expire", help="set when a key stops working")
    expire.add_argument("key_id")
    expire.add_argument("--at", type=_expiry, required=True, metavar="ISO|never",
                        help="ISO date or time (UTC when no offset is given), or 'never'")
    sub.add_parser("prices", help="show the price catalogue in force")
    ups = sub.add_parser("upstreams", help="list the upstreams in force (UPSTREAMS_FILE) with their health")
    ups.add_argument("--no-probe", action="store_true", help="do not call the upstreams")
    ups.add_argument("--timeout", type=float, default=5.0, help="seconds per health probe")
    ledger = sub.add_parser("ledger", help="spend ledger checks")
    ledger_sub = ledger.add_subparsers(dest="ledger_cmd", required=True)
    rec = ledger_sub.add_parser("reconcile", help="budget counters vs ledger sums per key and period "
                                                  "(prints the drift; exit 1 when it is not 0)")
    rec.add_argument("--since", type=_since, help="ISO date: check the periods from this day and month on")
    rec.add_argument("--all", action="store_true", help="print every counter, not only drifting ones")
    sweep = ledger_sub.add_parser("sweep", help="charge stale budget holds (replica died) as orphaned rows now")
    sweep.add_argument("--older-than", type=float, help="seconds (default: STALE_HOLD_SECONDS)")
    args = parser.parse_args(argv)
    settings = ChatApiSettings()
    try:
        if args.cmd == "migrate":
            migrate(settings.database_url)
            print("database at head")
        elif args.cmd == "keys":
            asyncio.run(_keys(args, settings))
        elif args.cmd == "ledger":
            code = _ledger(args, settings)
            if code:
                raise SystemExit(code)
        elif args.cmd == "prices":
            catalog = load_price_catalog(settings.price_catalog_path)
            print(f"price catalogue {catalog.version} (USD per 1M tokens)")
            print(f"{'model':<26}{'input':>10}{'cached':>10}{'output':>10}")
            for name in catalog.models():
                p = catalog.price_of(name)
                if p is not None:
                    cached = "-" if p.cached_input is None else str(p.cached_input)
                    print(f"{name:<26}{p.input!s:>10}{cached:>10}{p.output!s:>10}")
            for upstream, table in sorted(catalog.upstream_prices.items()):
                print(f"at upstream {upstream}:")
                for name, p in sorted(table.items()):
                    cached = "-" if p.cached_input is None else str(p.cached_input)
                    print(f"  {name:<24}{p.input!s:>10}{cached:>10}{p.output!s:>10}")
        elif args.cmd == "upstreams":
            _upstreams(args, settings)
    except DomainError as exc:
        print(f"error: {message_of(exc, 'en')} ({exc.code})", file=sys.stderr)
        raise SystemExit(2) from None
    except UpstreamConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _upstreams(args: argparse.Namespace, settings: ChatApiSettings) -> None:
    """One line per upstream in routing order, with its health from a live probe (the key is
    shown as the variable it comes from, never its value)."""
    upstreams = configured_upstreams(settings, load_price_catalog(settings.price_catalog_path))

    async def probe_all() -> list[str]:
        return list(await asyncio.gather(*(probe_upstream(u, args.timeout) for u in upstreams)))

    health = ["not probed"] * len(upstreams) if args.no_probe else asyncio.run(probe_all())
    print(f"{'name':<20}{'kind':<19}{'prio':>5}{'weight':>8}  {'user keys':<10}{'key from':<26}{'health':<16}models")
    for u, state in sorted(zip(upstreams, health, strict=True), key=lambda p: (p[0].priority, p[0].name)):
        models = "any" if u.models is None else ", ".join(
            m if d == m else f"{m}->{d}" for m, d in sorted(u.models.items()))
        key = u.api_key_env + ("" if u.api_key else " (unset)")
        print(f"{u.name:<20}{u.kind.value:<19}{u.priority:>5}{u.weight:>8g}  {'yes' if u.accepts_user_keys else 'no':<10}"
              f"{key:<26}{state:<16}{models}")
        print(f"{'':<20}{u.base_url}")
