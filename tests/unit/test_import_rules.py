"""Dependencies point inward: the domain core imports no framework, database or network
library (import-linter contracts in pyproject.toml, and what a real import pulls in)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CORE_MODULES = [
    "domain", "domain.money", "domain.usage", "domain.text", "domain.errors", "domain.pricing",
    "domain.client_keys", "domain.key_policy", "domain.budgets", "domain.conversations", "domain.ledger",
    "domain.ports", "domain.use_cases", "domain.use_cases.chat_turn", "domain.use_cases.client_keys",
    "domain.pii", "domain.pii.detect", "domain.pii.validators", "domain.pii.guard",
]
FORBIDDEN = ["fastapi", "starlette", "sqlalchemy", "sqlmodel", "openai", "httpx", "httpx2", "psutil", "psycopg",
             "streamlit", "pydantic", "domain.adapters"]


def test_import_linter_contracts_hold():
    result = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_importing_the_core_loads_no_framework_database_or_network_library():
    code = (
        "import importlib, json, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} "
        "or m.startswith('domain.adapters'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == []
