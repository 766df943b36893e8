"""Secrets from the environment, else kept in a file under ``DATA_DIR``: the one convention
chat_api, llmctl, the console and ``scripts/dev.sh`` share, so every process agrees on the
admin token, the key-hash secret and the console password.

A variable that is set wins. Otherwise the file ``DATA_DIR/<name>`` holds the secret: made
private (0600) when read by its owner, generated once (``secrets.token_urlsafe(32)``) when a
writer finds it missing or empty, in a directory it creates 0700.

    python -m domain.adapters.secret_files NAME    # prints DATA_DIR/NAME, generating it if needed
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

DEFAULT_DATA_DIR = "data"


def data_dir() -> Path:
    """``DATA_DIR`` (``data`` when unset), as the services read it."""
    return Path(os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR)


def read_secret(path: Path, env_value: str | None) -> str | None:
    """The configured value, else the kept file's content, else None (missing, empty or
    unreadable). Never writes: the console reads what chat_api or ``make dev`` generated."""
    if env_value:
        return env_value
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def configured_secret(env_name: str, file_name: str) -> str | None:
    """``read_secret`` of the variable ``env_name`` (surrounding blanks dropped) and the file
    ``DATA_DIR/file_name``."""
    return read_secret(data_dir() / file_name, (os.environ.get(env_name) or "").strip() or None)


def load_or_create_secret(path: Path, env_value: str | None) -> str:
    """The configured secret, or one generated once and kept in ``path``: the file 0600, a
    directory it creates 0700; a kept file others could read is made private on read."""
    if env_value:
        return env_value
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            return kept
    _private_dir(path.parent)
    value = secrets.token_urlsafe(32)
    # O_EXCL for a new file: two processes starting at once never both write one; an empty
    # file (an interrupted write) is replaced.
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if path.exists() else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def _private_dir(path: Path) -> None:
    """Creates ``path`` (and missing parents) 0700; an existing directory is left alone (the
    operator may share it on purpose), its secret files are private anyway."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)  # mkdir's mode is filtered by the umask


def main(argv: list[str] | None = None) -> int:
    """Prints the secret kept as ``DATA_DIR/NAME`` (generated when missing), no newline: for
    shell scripts, which check their environment variable themselves first."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0] or "/" in args[0] or args[0].startswith("."):
        print("usage: python -m domain.adapters.secret_files NAME", file=sys.stderr)
        return 2
    sys.stdout.write(load_or_create_secret(data_dir() / args[0], None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
