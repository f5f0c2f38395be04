"""What replay protection must remember across a restart and a clock step: per signer, the newest timestamp
accepted (a high-water mark) and the nonces seen near it. Kept in an embedded SQLite database in the node's
state directory (the agent config's ``state_dir``), or in memory when there is none.

Replay checks that compare a message's timestamp with the receiver's clock, and remember recent messages in
memory, reopen their window twice: when the process restarts (its memory is gone, the timestamp is still fresh)
and when the receiver's clock steps back (an old timestamp is fresh again, and what was forgotten as too old is
accepted again). A high-water mark per signer closes both: it never goes down, it survives the process, and it
does not depend on the receiver's clock. Its users (route_server/server.py, leases/requests.py) say
what they accept relative to it.

Values are stored as given (ints stay ints, floats floats). Every change is committed at once (WAL journal): a
process killed right after accepting a message has recorded it.
"""
from __future__ import annotations

import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS high_water (scope TEXT NOT NULL, key BLOB NOT NULL, value NOT NULL,
                                       PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS tokens (scope TEXT NOT NULL, key BLOB NOT NULL, token BLOB NOT NULL, value NOT NULL,
                                   PRIMARY KEY (scope, key, token));
"""


class ReplayState:
    def __init__(self, path: str | None = None):
        """``path``: the database file (created if needed); None keeps the state in memory only."""
        self.path = path
        self._db = sqlite3.connect(path or ":memory:", isolation_level=None)     # autocommit
        if path:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def high_water(self, scope: str, key: bytes):
        """The highest value recorded for (scope, key), or None."""
        row = self._db.execute("SELECT value FROM high_water WHERE scope = ? AND key = ?", (scope, key)).fetchone()
        return None if row is None else row[0]

    def raise_high_water(self, scope: str, key: bytes, value) -> None:
        self._db.execute("INSERT INTO high_water VALUES (?, ?, ?) ON CONFLICT (scope, key) "
                         "DO UPDATE SET value = max(value, excluded.value)", (scope, key, value))

    def seen(self, scope: str, key: bytes, token: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM tokens WHERE scope = ? AND key = ? AND token = ?",
                                (scope, key, token)).fetchone() is not None

    def remember(self, scope: str, key: bytes, token: bytes, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)", (scope, key, token, value))

    def forget_tokens(self, scope: str, key: bytes, up_to) -> None:
        """Drop the tokens of (scope, key) whose value is at most ``up_to``."""
        self._db.execute("DELETE FROM tokens WHERE scope = ? AND key = ? AND value <= ?", (scope, key, up_to))

    def close(self) -> None:
        self._db.close()
