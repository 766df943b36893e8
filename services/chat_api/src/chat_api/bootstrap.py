"""The composition root: builds every adapter and use case from settings, once, at startup."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Engine

from chat_api.auth_cache import CachedAuthenticator
from chat_api.settings import ChatApiSettings, load_or_create_secret
from chat_api.upstream_config import build_router
from domain.adapters.clock import SystemClock
from domain.adapters.prices import load_price_catalog
from domain.adapters.routing_provider import RoutingLlmProvider
from domain.adapters.sql.database import make_engine
from domain.adapters.sql.idempotency import SqlIdempotencyStore
from domain.adapters.sql.ledger import SqlSpendLedger
from domain.adapters.sql.psycopg_budgets import PsycopgBudgetStore
from domain.adapters.sql.repositories import (
    SqlBudgetStore,
    SqlClientKeyRepository,
    SqlConversationRepository,
)
from domain.client_keys import BudgetLimits, ClientIdentity
from domain.key_policy import DefaultKeyPolicy
from domain.money import Money
from domain.pricing import PriceTable
from domain.use_cases.chat_turn import ChatSettings, HandleChatTurn
from domain.use_cases.client_keys import AuthenticateClient, IssueClientKey, RevokeClientKey, SetClientBudget


def _usd(value: Decimal | None) -> Money | None:
    return None if value is None else Money.from_usd(value)


@dataclass
class Container:
    settings: ChatApiSettings
    engine: Engine
    prices: PriceTable
    clock: SystemClock
    keys: SqlClientKeyRepository
    budgets: SqlBudgetStore
    conversations: SqlConversationRepository
    ledger: SqlSpendLedger
    idempotency: SqlIdempotencyStore
    provider: RoutingLlmProvider
    policy: DefaultKeyPolicy
    chat: HandleChatTurn
    authenticate: CachedAuthenticator
    issue_key: IssueClientKey
    revoke_key: RevokeClientKey
    set_budget: SetClientBudget
    admin_token: str
    executor: ThreadPoolExecutor
    schema_head: str | None = None

    async def start(self) -> None:
        self.ledger.start()
        await self.budgets.open()

    async def aclose(self) -> None:
        self.ledger.close()
        await self.provider.aclose()
        await self.budgets.aclose()
        self.executor.shutdown(wait=True)
        self.engine.dispose()


def bootstrap(settings: ChatApiSettings | None = None, *, on_retry=None) -> Container:  # type: ignore[no-untyped-def]
    settings = settings or ChatApiSettings()
    engine = make_engine(settings.database_url, pool_size=10)
    executor = ThreadPoolExecutor(max_workers=10, thread_name_prefix="db")
    prices = load_price_catalog(settings.price_catalog_path)
    clock = SystemClock()
    hash_secret = load_or_create_secret(settings.secret_file("key_hash_secret"), settings.key_hash_secret).encode()
    admin_token = load_or_create_secret(settings.secret_file("admin_token"), settings.admin_token)
    keys = SqlClientKeyRepository(engine, executor)
    # Budget holds are written without waiting for the WAL flush: losing one in a crash only
    # loosens the budget until the (durably written) ledger row counts the real charge.
    budget_engine = make_engine(settings.database_url, pool_size=10, synchronous_commit=False)
    budgets = (PsycopgBudgetStore(budget_engine, executor) if budget_engine.dialect.name == "postgresql"
               else SqlBudgetStore(budget_engine, executor))
    conversations = SqlConversationRepository(engine, executor)
    ledger = SqlSpendLedger(engine, spool_path=settings.ledger_spool_path or settings.data_dir / "ledger-spool.jsonl")
    # Several upstreams behind one provider; the policy's "server key" stands for each one's own.
    provider, allowed_models = build_router(settings, prices, on_retry)
    policy = DefaultKeyPolicy(provider.server_key)
    chat = HandleChatTurn(
        provider=provider, conversations=conversations, ledger=ledger, budgets=budgets, prices=prices,
        policy=policy, clock=clock,
        settings=ChatSettings(history_token_budget=settings.history_token_budget,
                              global_limits=BudgetLimits(_usd(settings.global_daily_usd), _usd(settings.global_monthly_usd)),
                              allowed_models=allowed_models))
    anonymous = (ClientIdentity(None, "anon", BudgetLimits(_usd(settings.anonymous_daily_usd),
                                                           _usd(settings.anonymous_monthly_usd)))
                 if settings.allow_anonymous else None)
    authenticate = CachedAuthenticator(AuthenticateClient(keys, hash_secret, anonymous), ttl=settings.auth_cache_seconds)
    return Container(settings=settings, engine=engine, prices=prices, clock=clock, keys=keys, budgets=budgets,
                     conversations=conversations, ledger=ledger,
                     idempotency=SqlIdempotencyStore(engine, executor), provider=provider, policy=policy, chat=chat,
                     authenticate=authenticate, issue_key=IssueClientKey(keys, clock, hash_secret),
                     revoke_key=RevokeClientKey(keys, clock), set_budget=SetClientBudget(keys),
                     admin_token=admin_token, executor=executor,
                     schema_head=migrations_head())


def migrations_head() -> str | None:
    """The newest migration shipped with this code (None when the scripts are not found)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from chat_api.cli import find_alembic_ini

    try:
        return ScriptDirectory.from_config(Config(str(find_alembic_ini()))).get_current_head()
    except SystemExit:
        return None
