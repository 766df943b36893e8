"""``llmctl ledger reconcile`` as the fault tests run it: budget counters equal the ledger."""
from __future__ import annotations

import os
import subprocess

from tests.support.processes import BIN, ROOT


def reconcile(db_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "llmctl"), "ledger", "reconcile"], env={**os.environ, "DATABASE_URL": db_url},
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def assert_reconciled(db_url: str) -> None:
    result = reconcile(db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drift 0.000000000 USD" in result.stdout
