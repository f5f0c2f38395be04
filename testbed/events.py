"""The run's event log, ``events.jsonl``: one JSON object per line, appended by any process of the run.

Event::

    {"ts": 1763750000.123,            # wall-clock seconds (time.time()), so processes agree
     "kind": "fault",                 # see KINDS; other lower-case names are allowed
     "node": "n3" | null,             # the node it concerns, if one
     "link": "eth1" | "n1-n2" | null, # the link it concerns (an interface name for counters)
     "details": {...}}                # kind-specific, JSON values only

Conventions the report relies on (testbed/report.py):

* ``fault`` details: ``type`` (link_down, loss, partition, crash, ...), ``id`` (unique per fault, repeated by its
  ``heal``), anything else (parameters). ``heal`` details: ``id`` of the healed fault; no id heals all open faults.
* ``assertion`` details: ``name``, ``ok`` (bool), ``message``; a reachability assertion also has ``src``/``dst``.
* ``ping`` details: ``src``, ``dst``, ``reachable`` (bool), ``rtt_ms``.
* ``counters``: what the agent's ``counters`` command returned, per link (``link`` = interface name, details =
  rx/tx packets/bytes and drops) and per node (``link`` null, details = tun, drops, switch, path_failures).

Writing is safe from several processes: the file is opened with O_APPEND and each event is one ``write()`` of
one complete line, so lines never interleave. Reading skips (and reports) lines that are not events, such as the
partial last line of a writer that was killed mid-write.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time

from node.agent.control_client import AgentClient

log = logging.getLogger(__name__)

FILENAME = "events.jsonl"
FAULT, HEAL, ROUTE_CHANGE, AGENT_RESTART, ASSERTION, COUNTERS, UP, DOWN, PING = (
    "fault", "heal", "route_change", "agent_restart", "assertion", "counters", "up", "down", "ping")
RUN_START, RUN_END, SAMPLER_ERROR = "run_start", "run_end", "sampler_error"
AGENT_DIED, RESTART_GAVE_UP = "agent_died", "restart_gave_up"      # written by the run monitor
KINDS = (FAULT, HEAL, ROUTE_CHANGE, AGENT_RESTART, ASSERTION, COUNTERS, UP, DOWN, PING, RUN_START, RUN_END,
         SAMPLER_ERROR, AGENT_DIED, RESTART_GAVE_UP)
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
            self.path = os.path.join(self.path, FILENAME)
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


# -- reading ----------------------------------------------------------------------------------------------

def _valid(event) -> bool:
    return (isinstance(event, dict) and isinstance(event.get("ts"), (int, float))
            and not isinstance(event.get("ts"), bool) and isinstance(event.get("kind"), str)
            and isinstance(event.get("details", {}), dict))


def iter_events(path, errors=None):
    """Yield the events of a log in file order. Bad lines are skipped; with ``errors`` (a list) each one
    is recorded as ``(line number, reason)``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, FILENAME)
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            reason = None
            try:
                event = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                reason = f"not JSON: {e}"
            else:
                if not raw.endswith(b"\n"):
                    reason = "partial last line"
                elif not _valid(event):
                    reason = "not an event (needs ts, kind, details)"
            if reason:
                if errors is not None:
                    errors.append((n, reason))
                continue
            event.setdefault("node", None)
            event.setdefault("link", None)
            event.setdefault("details", {})
            yield event


def read_events(path, kind=None, node=None, link=None, since=None, until=None, where=None, errors=None):
    """Events matching every given filter. ``kind`` is a name or a collection of names; ``since``/``until``
    bound ``ts`` (inclusive); ``where`` is a predicate on the event."""
    kinds = {kind} if isinstance(kind, str) else (set(kind) if kind is not None else None)
    out = []
    for e in iter_events(path, errors):
        if kinds is not None and e["kind"] not in kinds:
            continue
        if node is not None and e["node"] != node:
            continue
        if link is not None and e["link"] != link:
            continue
        if since is not None and e["ts"] < since:
            continue
        if until is not None and e["ts"] > until:
            continue
        if where is not None and not where(e):
            continue
        out.append(e)
    return out


# -- counters sampler -------------------------------------------------------------------------------------

class CountersSampler:
    """Polls every agent's ``counters`` command and appends per-link and per-node samples.

    ``agents`` maps node name -> control socket path (or an object with ``call``). An agent that does not
    answer is counted in ``failures`` and logged as one ``sampler_error`` event when it stops answering
    (not on every poll); the sampler itself never stops on a bad agent.
    """

    def __init__(self, log: EventLog, agents: dict, interval_s: float = 1.0, timeout_s: float = 2.0,
                 client_factory=None):
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.log = log
        self.interval_s = interval_s
        factory = client_factory or (lambda path: AgentClient(path, timeout=timeout_s))
        self.clients = {name: (a if hasattr(a, "call") else factory(a)) for name, a in agents.items()}
        self.samples = 0
        self.failures = {}
        self._failing = set()
        self._stop = threading.Event()
        self._thread = None

    def sample_once(self, ts=None) -> int:
        """Poll every agent once; returns the number of events written."""
        written = 0
        for name, client in self.clients.items():
            try:
                answer = client.call("counters")
            except Exception as e:      # agent down, socket gone, bad JSON: a sample is lost, not the run
                self.failures[name] = self.failures.get(name, 0) + 1
                if name not in self._failing:
                    self._failing.add(name)
                    self._safe_append(SAMPLER_ERROR, name, None, ts, error=f"{type(e).__name__}: {e}")
                continue
            self._failing.discard(name)
            now = time.time() if ts is None else ts
            for ifname, c in (answer.get("interfaces") or {}).items():
                written += self._safe_append(COUNTERS, name, ifname, now, **c)
            node_part = {k: v for k, v in answer.items() if k not in ("ok", "interfaces")}
            written += self._safe_append(COUNTERS, name, None, now, **node_part)
        self.samples += 1
        return written

    def _safe_append(self, kind, node, link, ts, **details) -> int:
        try:
            self.log.append(kind, node, link, ts, **details)
            return 1
        except (EventLogError, OSError) as e:
            log.warning("event log: %s", e)
            return 0

    def _run(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self):
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="counters-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
            self._thread = None
