"""Budget rules: which counters a request draws on, and for which periods."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from domain.client_keys import BudgetLimits, scope_of
from domain.errors import BudgetExceeded
from domain.key_policy import KeySource
from domain.money import Money
from domain.periods import KST, day_key, is_day_key, month_key

GLOBAL_SCOPE = "global"


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One counter a reservation must fit under: a scope (a client key, anonymous, global)
    in one period (a day or a month), with its cap (None: counted but uncapped)."""

    scope: str
    period: str
    limit: Money | None


@dataclass(frozen=True, slots=True)
class HoldTag:
    """Whose request a hold is for, stored with the hold: the hold is the request's
    write-ahead record. If its replica dies before the ledger row is stored, the stale hold
    becomes that request's ledger row (``Outcome.ORPHANED``), charged at the held amount.
    Every upstream call takes one — on no counter at all when no budget applies."""

    request_id: str
    client_key_id: str | None
    route: str
    model: str
    catalog_version: str
    key_source: KeySource = KeySource.SERVER  # a caller's own key: the orphaned row charges nothing


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    lines: tuple[BudgetLine, ...]
    amount: Money


def budget_lines(scope: str, limits: BudgetLimits, global_limits: BudgetLimits, now: datetime,
                 tz: tzinfo = KST) -> tuple[BudgetLine, ...]:
    """Every counter a request is counted in. Periods are calendar days and months in the
    budget time zone (``BUDGET_TIMEZONE``, ``domain.periods``): a daily cap rolls over at
    local midnight, not at UTC midnight."""
    day, month = day_key(now, tz), month_key(now, tz)
    return (
        BudgetLine(scope, day, limits.daily),
        BudgetLine(scope, month, limits.monthly),
        BudgetLine(GLOBAL_SCOPE, day, global_limits.daily),
        BudgetLine(GLOBAL_SCOPE, month, global_limits.monthly),
    )


def capped(lines: tuple[BudgetLine, ...]) -> tuple[BudgetLine, ...]:
    """The lines a reservation must hold: only capped ones. Uncapped lines need no hold;
    they are counted when the ledger row is stored (``spend_lines``), which keeps the hot
    path free of database writes for clients without a budget."""
    return tuple(line for line in lines if line.limit is not None)


def spend_lines(budget_key_id: str | None, at: datetime, tz: tzinfo = KST) -> tuple[BudgetLine, ...]:
    """Where a stored ledger row's charge is counted: its client's budget (the key's own, or
    its rotation chain's: ``ClientKey.budget_owner``) and the global day and month (budget
    time zone) of the moment it was recorded."""
    return budget_lines(scope_of(budget_key_id), BudgetLimits(), BudgetLimits(), at, tz)


def budget_exceeded(line: BudgetLine) -> BudgetExceeded:
    return BudgetExceeded("budget_exceeded", scope="global" if line.scope == "global" else "key",
                          period="daily" if is_day_key(line.period) else "monthly")
