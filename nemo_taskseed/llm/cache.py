"""The request cache: every finished model request, keyed by a content hash, persisted atomically.

Generation is the expensive part, so each request's replies are committed to SQLite as soon as
its chunk finishes. SQLite's journal makes each commit all-or-nothing: a process killed with
SIGKILL leaves the cache as of its last commit, never half a row. A restart looks every request
up by key and sends only the misses, so finished requests are never re-sent and adding seeds to
a finished run generates only for the new ones.

The key is sha256 over the canonical JSON of (messages, model, sampling, json_schema): the
prompt template's wording and version are inside the messages, so editing a template re-generates.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def request_key(messages: list[dict], model: str, sampling: dict[str, Any], json_schema: dict | None) -> str:
    blob = json.dumps(
        {"messages": messages, "model": model, "sampling": sampling, "json_schema": json_schema},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class RequestCache:
    # SQLite's name for a database that lives in this connection only (nothing on disk).
    IN_MEMORY = ":memory:"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != self.IN_MEMORY:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: explicit BEGIN/COMMIT below, one transaction per chunk.
        # check_same_thread=False: Ray actors call setup() and process() on different threads;
        # calls never overlap (one batch at a time), and the lock keeps it that way.
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=60, check_same_thread=False)
        self._lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, outputs TEXT NOT NULL, backend TEXT NOT NULL, created REAL NOT NULL)"
        )

    @classmethod
    def for_shard(cls, folder: str | Path, shard: str, purpose: str) -> RequestCache:
        """A shard's own cache for one purpose (`<folder>/<shard>.<purpose>.sqlite`): one writer,
        the worker that has the shard, so no SQLite file is shared between processes."""
        return cls(Path(folder) / f"{shard}.{purpose}.sqlite")

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        with self._lock:
            return self._get_many(keys)

    def _get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            rows = self.db.execute(
                f"SELECT key, outputs, backend FROM responses WHERE key IN ({','.join('?' * len(part))})", part
            )
            for key, outputs, backend in rows:
                found[key] = {"outputs": json.loads(outputs), "backend": backend}
        return found

    def put_many(self, entries: dict[str, tuple[list[str], str]]) -> None:
        """Commit {key: (outputs, backend)} in one transaction."""
        with self._lock:
            self._put_many(entries)

    def _put_many(self, entries: dict[str, tuple[list[str], str]]) -> None:
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO responses (key, outputs, backend, created) VALUES (?, ?, ?, ?)",
                [(k, json.dumps(o, ensure_ascii=False), b, now) for k, (o, b) in entries.items()],
            )
            self.db.execute("COMMIT")
        except BaseException:
            # When the commit itself failed (disk full), SQLite has already rolled back and this
            # ROLLBACK fails with "no transaction is active", which would hide the real cause.
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self.db.close()
