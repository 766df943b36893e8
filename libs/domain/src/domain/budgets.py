"""Budget rules: which counters a request draws on, and for which periods."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.client_keys import BudgetLimits
from domain.errors import BudgetExceeded
from domain.money import Money

GLOBAL_SCOPE = "global"


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One counter a reservation must fit under: a scope (a client key, anonymous, global)
    in one period (a day or a month), with its cap (None: counted but uncapped)."""

    scope: str
    period: str
    limit: Money | None


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    lines: tuple[BudgetLine, ...]
    amount: Money


def budget_lines(scope: str, limits: BudgetLimits, global_limits: BudgetLimits, now: datetime) -> tuple[BudgetLine, ...]:
    """Periods are calendar days and months of the server's clock (UTC unless configured)."""
    day, month = f"d:{now:%Y-%m-%d}", f"m:{now:%Y-%m}"
    return (
        BudgetLine(scope, day, limits.daily),
        BudgetLine(scope, month, limits.monthly),
        BudgetLine(GLOBAL_SCOPE, day, global_limits.daily),
        BudgetLine(GLOBAL_SCOPE, month, global_limits.monthly),
    )


def budget_exceeded(line: BudgetLine) -> BudgetExceeded:
    period = "일일" if line.period.startswith("d:") else "월간"
    period_en = "daily" if line.period.startswith("d:") else "monthly"
    who, who_en = ("전체 서버", "server-wide") if line.scope == "global" else ("이 클라이언트 키의", "this client key's")
    return BudgetExceeded("budget_exceeded", f"{who} {period} 예산을 초과했습니다. 나중에 다시 시도하거나 운영자에게 문의하세요.",
                          f"The {who_en} {period_en} budget is exhausted. Try again later or ask an operator.")
