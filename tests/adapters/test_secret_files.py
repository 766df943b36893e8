"""One secret-file convention for chat_api, llmctl, the console and ``make dev``: the
variable if set, else ``DATA_DIR/<name>``, generated once, private."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from domain.adapters.secret_files import configured_secret, load_or_create_secret, read_secret


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "domain.adapters.secret_files", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_shell_cli_generates_once_and_prints_the_kept_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    first = _cli(data_dir, "admin_token")
    assert first.returncode == 0 and first.stdout and "\n" not in first.stdout
    assert _cli(data_dir, "admin_token").stdout == first.stdout
    assert (data_dir / "admin_token").read_text() == first.stdout
    assert stat.S_IMODE((data_dir / "admin_token").stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(data_dir.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("name", ["", "../admin_token", "a/b", ".hidden"])
def test_the_cli_refuses_a_name_outside_data_dir(tmp_path: Path, name: str) -> None:
    done = _cli(tmp_path, name)
    assert done.returncode == 2 and "usage" in done.stderr and not any(tmp_path.iterdir())


def test_the_console_reads_what_chat_api_generated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    assert configured_secret("ADMIN_TOKEN", "admin_token") is None  # the console never writes one
    generated = load_or_create_secret(tmp_path / "admin_token", None)
    assert configured_secret("ADMIN_TOKEN", "admin_token") == generated
    monkeypatch.setenv("ADMIN_TOKEN", "  from-the-environment \n")
    assert configured_secret("ADMIN_TOKEN", "admin_token") == "from-the-environment"
    assert load_or_create_secret(tmp_path / "admin_token", "from-settings") == "from-settings"


def test_an_empty_kept_file_is_replaced_not_used(tmp_path: Path) -> None:
    path = tmp_path / "key_hash_secret"
    path.write_text("\n")
    assert read_secret(path, None) is None
    value = load_or_create_secret(path, None)
    assert len(value) >= 32 and path.read_text() == value
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
