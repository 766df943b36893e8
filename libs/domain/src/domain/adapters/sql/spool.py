"""The ledger's local spool: records kept on this replica's disk while the database is away.

A SQLite file (WAL), not a text file parsed by hand: a record is one row holding its JSON
with every non-ASCII character escaped, so any text — U+2028/U+2029/U+0085, NUL, lone
surrogates — round-trips, and no record can split or merge with another. A row that cannot
be read back is moved to the ``set_aside`` table (same file) and never stops the writer;
records the database refused are set aside there too, for an operator. The file and its
directory are private (0600 / 0700): records hold prompts and replies.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS set_aside (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
    "reason TEXT NOT NULL, payload TEXT NOT NULL)",
)


def encode(document: dict[str, object]) -> str:
    """ASCII-only JSON: lone surrogates and line separators become escapes, and come back."""
    return json.dumps(document, ensure_ascii=True, separators=(",", ":"))


def private_dir(path: Path) -> None:
    """Creates ``path`` (and parents) owner-only; an existing directory keeps its mode."""
    if not path.exists():
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def private_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class SqliteSpool:
    """Append, take in order, remove, set aside. Thread-safe (one connection, one lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()  # reentrant: opening may import an old spool
        self._conn: sqlite3.Connection | None = None

    # -- opening ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        private_dir(self.path.parent)
        legacy = self._move_aside_if_not_sqlite()
        private_file(self.path)
        try:
            conn = self._open()
        except sqlite3.DatabaseError:
            # A damaged spool file must not stop the ledger: keep it for an operator, start anew.
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            log.error("ledger spool %s is damaged; moved to %s", self.path, aside)
            os.replace(self.path, aside)
            private_file(self.path)
            conn = self._open()
        self._conn = conn
        if legacy is not None:
            self._import_lines(legacy)
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a spooled record survives a power cut
            for statement in _SCHEMA:
                conn.execute(statement)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _move_aside_if_not_sqlite(self) -> Path | None:
        """A spool written by an older version (JSON lines) at this path is renamed, then
        imported line by line once the SQLite file exists."""
        try:
            with self.path.open("rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return None
        if not head or head == _SQLITE_MAGIC:
            return None
        legacy = self.path.with_name(f"{self.path.name}.jsonl-{int(time.time())}")
        os.replace(self.path, legacy)
        os.chmod(legacy, 0o600)
        return legacy

    def import_jsonl(self, path: Path) -> int:
        """Imports an older JSON-lines spool (split on "\\n" only: U+2028 inside a record is
        text, not a line break); lines that do not parse are set aside. The file is removed."""
        if not path.exists():
            return 0
        self._connection()
        return self._import_lines(path)

    def _import_lines(self, path: Path) -> int:
        good, bad = [], []
        for raw in path.read_bytes().split(b"\n"):
            if not raw.strip():
                continue
            text = raw.decode("utf-8", "surrogateescape")
            try:
                document = json.loads(text)
                if not isinstance(document, dict):
                    raise ValueError("not an object")
                good.append(encode(document))
            except ValueError:
                bad.append(("unreadable legacy spool line", encode({"raw": text})))
        with self._tx() as conn:
            conn.executemany("INSERT INTO spool (payload) VALUES (?)", [(p,) for p in good])
            conn.executemany("INSERT INTO set_aside (at, reason, payload) VALUES (?, ?, ?)",
                             [(time.time(), reason, p) for reason, p in bad])
        path.unlink()
        log.warning("imported %d records (%d set aside) from the old spool %s", len(good), len(bad), path)
        return len(good)

    def _tx(self) -> _Transaction:
        return _Transaction(self)

    # -- use ---------------------------------------------------------------------------------
    def append(self, payloads: Iterable[str]) -> None:
        with self._tx() as conn:
            conn.executemany("INSERT INTO spool (payload) VALUES (?)", [(p,) for p in payloads])

    def take(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` records, left in place until ``remove``."""
        with self._lock:
            rows = self._connection().execute("SELECT seq, payload FROM spool ORDER BY seq LIMIT ?",
                                              (limit,)).fetchall()
        return [(int(seq), payload if isinstance(payload, str) else repr(payload)) for seq, payload in rows]

    def remove(self, seqs: Iterable[int], set_aside: Iterable[tuple[str, str]] = ()) -> None:
        """Removes stored records and, in the same transaction, sets others aside."""
        with self._tx() as conn:
            conn.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in seqs])
            conn.executemany("INSERT INTO set_aside (at, reason, payload) VALUES (?, ?, ?)",
                             [(time.time(), reason, payload) for reason, payload in set_aside])

    def set_aside(self, entries: Iterable[tuple[str, str]]) -> None:
        self.remove((), entries)

    def size(self) -> int:
        return self._count("spool")

    def set_aside_count(self) -> int:
        return self._count("set_aside")

    def set_aside_entries(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(r, p) for r, p in self._connection().execute(
                "SELECT reason, payload FROM set_aside ORDER BY seq").fetchall()]

    def _count(self, table: str) -> int:
        if self._conn is None and not self.path.exists():
            return 0
        with self._lock:
            return int(self._connection().execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under the spool's lock (rolled back on error)."""

    def __init__(self, spool: SqliteSpool) -> None:
        self._spool = spool

    def __enter__(self) -> sqlite3.Connection:
        self._spool._lock.acquire()
        try:
            self._conn = self._spool._connection()
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._spool._lock.release()
            raise
        return self._conn

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        try:
            self._conn.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self._spool._lock.release()
