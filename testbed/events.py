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

Writing is safe from several processes (node/event_log.py, which the services inside nodes use too: the file is
opened with O_APPEND and each event is one ``write()`` of one complete line, so lines never interleave). Reading
skips (and reports) lines that are not events, such as the partial last line of a writer that was killed mid-write.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time

from node.agent.control_client import AgentClient
from node.event_log import EventLog, EventLogError, encode_event, make_event  # noqa: F401 (the writer's home)

log = logging.getLogger(__name__)

FILENAME = "events.jsonl"
FAULT, HEAL, ROUTE_CHANGE, AGENT_RESTART, ASSERTION, COUNTERS, UP, DOWN, PING = (
    "fault", "heal", "route_change", "agent_restart", "assertion", "counters", "up", "down", "ping")
RUN_START, RUN_END, SAMPLER_ERROR = "run_start", "run_end", "sampler_error"
AGENT_DIED, RESTART_GAVE_UP = "agent_died", "restart_gave_up"      # written by the run monitor
KINDS = (FAULT, HEAL, ROUTE_CHANGE, AGENT_RESTART, ASSERTION, COUNTERS, UP, DOWN, PING, RUN_START, RUN_END,
         SAMPLER_ERROR, AGENT_DIED, RESTART_GAVE_UP)


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
