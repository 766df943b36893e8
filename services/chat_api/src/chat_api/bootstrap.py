"""The composition root: builds every adapter and use case from settings, once, at startup.

Every port can be replaced (``bootstrap(settings, provider=FakeLlmProvider())``), the way
cosmicpython's bootstrap takes its dependencies: tests and tools swap one adapter and keep
the rest real.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Engine

from chat_api.alerting import AlertWatch
from chat_api.auth_cache import CachedAuthenticator
from chat_api.background import BackgroundPoller
from chat_api.settings import ChatApiSettings
from chat_api.upstream_config import build_router
from domain.adapters.clock import SystemClock
from domain.adapters.prices import load_price_catalog
from domain.adapters.routing_provider import RoutingLlmProvider, UpstreamStatus
from domain.adapters.secret_files import load_or_create_secret
from domain.adapters.sql.background import SqlBackgroundResponses
from domain.adapters.sql.database import make_engine
from domain.adapters.sql.idempotency import SqlIdempotencyStore
from domain.adapters.sql.ledger import SqlSpendLedger
from domain.adapters.sql.operator_records import SqlAuditLog
from domain.adapters.sql.psycopg_budgets import PsycopgBudgetStore
from domain.adapters.sql.psycopg_history import PsycopgConversationRepository
from domain.adapters.sql.repositories import (
    SqlBudgetStore,
    SqlClientKeyRepository,
    SqlConversationRepository,
)
from domain.adapters.sql.request_log import SqlRequestLog
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.key_policy import DefaultKeyPolicy
from domain.model_catalog import ModelCatalog
from domain.pii import PiiGuard
from domain.ports import Clock, LlmProvider
from domain.pricing import PriceTable
from domain.use_cases.chat_turn import ChatSettings, HandleChatTurn
from domain.use_cases.client_keys import (
    AuthenticateClient,
    IssueClientKey,
    RevokeClientKey,
    RotateClientKey,
    SetClientBudget,
    SetClientKeyExpiry,
    SetClientPiiPolicy,
)
from domain.use_cases.models import ListModels
from domain.use_cases.passthrough import HandlePassThrough, PassThroughSettings
from domain.use_cases.stored_responses import HandleStoredResponse


@dataclass(frozen=True)
class UseCases:
    """What the request pipeline runs, one object per endpoint family."""

    chat: HandleChatTurn
    stored_responses: HandleStoredResponse
    list_models: ListModels
    passthrough: HandlePassThrough


@dataclass
class Container:
    settings: ChatApiSettings
    engine: Engine
    prices: PriceTable
    models: ModelCatalog
    clock: Clock
    keys: SqlClientKeyRepository
    budgets: SqlBudgetStore
    conversations: SqlConversationRepository
    ledger: SqlSpendLedger
    idempotency: SqlIdempotencyStore
    provider: LlmProvider
    policy: DefaultKeyPolicy
    use_cases: UseCases
    authenticate: CachedAuthenticator
    issue_key: IssueClientKey
    revoke_key: RevokeClientKey
    rotate_key: RotateClientKey
    set_expiry: SetClientKeyExpiry
    set_budget: SetClientBudget
    set_pii_policy: SetClientPiiPolicy
    pii: PiiGuard  # the server's PII_POLICY; a key's own policy overrides it per request
    admin_token: str
    executor: ThreadPoolExecutor
    request_log: SqlRequestLog
    audit: SqlAuditLog
    alerts: AlertWatch
    background: BackgroundPoller
    schema_head: str | None = None
    keyless_original: ClientIdentity | None = None  # ALLOW_ANONYMOUS_ORIGINAL: who a keyless original caller is
    router: RoutingLlmProvider | None = None  # the provider, unless a caller replaced it

    def upstream_status(self) -> list[UpstreamStatus]:
        """Each upstream's health as this replica sees it (none when the provider was replaced)."""
        return self.router.status() if self.router is not None else []

    @property
    def chat(self) -> HandleChatTurn:
        return self.use_cases.chat

    async def start(self) -> None:
        # A spool left by an older version (JSON lines at the old default path) is imported.
        legacy = self.settings.data_dir / "ledger-spool.jsonl"
        if legacy.exists() and legacy != self.ledger.spool.path:
            self.ledger.spool.import_jsonl(legacy)
        self.ledger.start()
        self.request_log.start()
        await self.budgets.open()

    async def flush(self) -> None:
        """Waits until every ledger record handed over so far is stored (or spooled), and
        every request-log entry written."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.ledger.flush)
        await loop.run_in_executor(None, self.request_log.wait_written)

    async def aclose(self) -> None:
        self.ledger.close()
        self.request_log.close()
        await self.alerts.aclose()
        await self.provider.aclose()
        await self.budgets.aclose()
        self.executor.shutdown(wait=True)
        self.engine.dispose()


def bootstrap(settings: ChatApiSettings | None = None, *, engine: Engine | None = None,
              prices: PriceTable | None = None, clock: Clock | None = None,
              keys: SqlClientKeyRepository | None = None, budgets: SqlBudgetStore | None = None,
              conversations: SqlConversationRepository | None = None, ledger: SqlSpendLedger | None = None,
              idempotency: SqlIdempotencyStore | None = None, provider: LlmProvider | None = None,
              on_retry: Callable[[str], None] | None = None) -> Container:
    """Every adapter from ``settings``, except those passed in (per-port overrides)."""
    settings = settings or ChatApiSettings()
    engine = engine or make_engine(settings.database_url, pool_size=10)
    executor = ThreadPoolExecutor(max_workers=10, thread_name_prefix="db")
    prices = prices or load_price_catalog(settings.price_catalog_path)
    clock = clock or SystemClock()
    hash_secret = load_or_create_secret(settings.secret_file("key_hash_secret"), settings.key_hash_secret).encode()
    admin_token = load_or_create_secret(settings.secret_file("admin_token"), settings.admin_token)
    keys = keys or SqlClientKeyRepository(engine, executor)
    if budgets is None:
        # Budget holds are written without waiting for the WAL flush: losing one in a crash only
        # loosens the budget until the (durably written) ledger row counts the real charge.
        budget_engine = make_engine(settings.database_url, pool_size=10, synchronous_commit=False)
        budgets = (PsycopgBudgetStore(budget_engine, executor) if budget_engine.dialect.name == "postgresql"
                   else SqlBudgetStore(budget_engine, executor))
    if conversations is None:
        # Replayed history is read on the event loop, on the budget store's pool (PostgreSQL).
        conversations = (PsycopgConversationRepository(engine, executor, budgets.pool)
                         if isinstance(budgets, PsycopgBudgetStore) else SqlConversationRepository(engine, executor))
    ledger = ledger or SqlSpendLedger(engine, spool_path=settings.ledger_spool_path
                                      or settings.data_dir / "ledger-spool.sqlite3", tz=settings.tz)
    alerts = AlertWatch(engine, executor, clock.now, settings.tz, webhook_url=settings.alert_webhook_url,
                        budget_pct=settings.alert_budget_pct, error_rate=settings.alert_error_rate)

    def circuit_opened(upstream: str, scope: str) -> None:
        # The operator is told when an upstream key's shared circuit opens (failures from
        # several clients: that upstream is down), not when one client's own circuit does.
        if scope == "key":
            alerts.circuit_opened(upstream, detail="shared circuit")

    router: RoutingLlmProvider | None = None
    if provider is None:
        # Several upstreams behind one provider; the policy's "server key" is an opaque token
        # that stands for each upstream's own key (the real keys never leave the router).
        provider = router = build_router(settings, prices, on_retry, on_circuit_open=circuit_opened)
        policy = DefaultKeyPolicy(router.server_key)
    else:
        policy = DefaultKeyPolicy(settings.openai_api_key)
    # What clients may ask for: what the operator allows that some upstream serves.
    models = ModelCatalog.from_setting(prices, settings.extra_models,
                                       served=router.served_models() if router else None)
    global_limits = BudgetLimits.from_usd(settings.global_daily_usd, settings.global_monthly_usd)
    pending = SqlBackgroundResponses(engine, executor)
    # The key the server's own calls use: the router's opaque token when it routes.
    server_key = router.server_key if router else settings.openai_api_key
    background = BackgroundPoller(pending, provider, models, ledger, clock, executor, server_key,
                                  first_delay=settings.background_poll_seconds)
    chat = HandleChatTurn(
        provider=provider, conversations=conversations, ledger=ledger, budgets=budgets, models=models,
        policy=policy, clock=clock, owners=ledger, background=pending,
        settings=ChatSettings(history_token_budget=settings.history_token_budget,
                              history_max_turns=settings.history_max_turns, global_limits=global_limits,
                              tz=settings.tz))
    use_cases = UseCases(chat=chat,
                         stored_responses=HandleStoredResponse(owners=ledger, provider=provider, policy=policy,
                                                               finished=background),
                         list_models=ListModels(models, provider, server_key, clock,
                                                settings.models_cache_seconds),
                         passthrough=HandlePassThrough(provider=provider, ledger=ledger, budgets=budgets, models=models,
                                                       policy=policy, clock=clock,
                                                       settings=PassThroughSettings(global_limits, settings.tz)))
    anonymous = ClientIdentity(None, "anon", BudgetLimits.from_usd(settings.anonymous_daily_usd,
                                                                   settings.anonymous_monthly_usd))
    authenticate = CachedAuthenticator(AuthenticateClient(keys, hash_secret,
                                                          anonymous if settings.allow_anonymous else None, clock),
                                       ttl=settings.auth_cache_seconds)
    return Container(settings=settings, engine=engine, prices=prices, models=models, clock=clock, keys=keys,
                     budgets=budgets, conversations=conversations, ledger=ledger,
                     idempotency=idempotency or SqlIdempotencyStore(
                         engine, executor, pending_seconds=settings.idempotency_pending_seconds),
                     provider=provider, policy=policy, use_cases=use_cases, authenticate=authenticate,
                     issue_key=IssueClientKey(keys, clock, hash_secret), revoke_key=RevokeClientKey(keys, clock),
                     rotate_key=RotateClientKey(keys, clock, hash_secret),
                     set_expiry=SetClientKeyExpiry(keys, clock),
                     set_budget=SetClientBudget(keys), set_pii_policy=SetClientPiiPolicy(keys),
                     pii=PiiGuard(settings.pii_policy), admin_token=admin_token, executor=executor,
                     request_log=SqlRequestLog(engine), audit=SqlAuditLog(engine, executor),
                     alerts=alerts, background=background,
                     schema_head=migrations_head(), router=router,
                     keyless_original=anonymous if settings.allow_anonymous_original else None)


def migrations_head() -> str | None:
    """The newest migration shipped with this code (None when the scripts are not found)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from chat_api.cli import find_alembic_ini

    try:
        return ScriptDirectory.from_config(Config(str(find_alembic_ini()))).get_current_head()
    except SystemExit:
        return None
