"""Appending to a run's event log (``events.jsonl``) from any process: one JSON object per line.

Event::

    {"ts": 1763750000.123, "kind": "block_found", "node": "n3" | null, "link": "eth1" | null, "details": {...}}

Writing is safe from several processes: the file is opened with O_APPEND and each event is one ``write()`` of one
complete line, so lines never interleave. The orchestrator's reader, the kinds it knows and the report live in
testbed/events.py; the services inside nodes (chain nodes, pools, miners) write through this module, because
``node/`` never imports ``testbed/``.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class EventLogError(ValueError):
    """An event that cannot be written (bad kind, non-JSON details) or an unwritable log."""


def make_event(kind: str, node=None, link=None, details=None, ts=None) -> dict:
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise EventLogError(f"event kind must be a lower-case identifier, got {kind!r}")
    for name, value in (("node", node), ("link", link)):
        if value is not None and not isinstance(value, str):
            raise EventLogError(f"event {name} must be a string or None, got {value!r}")
    if details is not None and not isinstance(details, dict):
        raise EventLogError(f"event details must be a dict, got {type(details).__name__}")
    return {"ts": time.time() if ts is None else float(ts), "kind": kind, "node": node, "link": link,
            "details": details or {}}


def encode_event(event: dict) -> bytes:
    try:
        line = json.dumps(event, separators=(",", ":"), sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise EventLogError(f"event is not JSON-serialisable: {e}") from None
    return line.encode() + b"\n"


class EventLog:
    """Append-only writer. Cheap to create; one per process (or thread) is fine, several at once too."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            self.path = os.path.join(self.path, "events.jsonl")
        self._fd = None
        self._lock = threading.Lock()

    def _open(self):
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise EventLogError(f"cannot open event log {self.path}: {e.strerror}") from None
        return self._fd

    def write(self, event: dict) -> dict:
        data = encode_event(event)
        with self._lock:
            written = os.write(self._open(), data)
        if written != len(data):      # only on a full disk; a partial line is skipped by readers
            raise EventLogError(f"short write to {self.path}: {written} of {len(data)} bytes")
        return event

    def append(self, kind: str, node=None, link=None, ts=None, **details) -> dict:
        """Write one event and return it: ``log.append("fault", link="n1-n2", type="loss", id="f1", loss=0.1)``."""
        return self.write(make_event(kind, node, link, details, ts))

    def close(self):
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
