"""The run monitor: `python -m testbed.monitor RUN_DIR [--interval S]`.

One small process per run, started by `pktlab up` in the host namespace (it only talks to the agents' Unix sockets)
and tagged with the run id like every process of the run, so `down`/`cleanup` stop it with the rest. Every tick it

* samples every agent's counters into `counters.jsonl` for the report's throughput plots and the live view's link
  load, but only when something will read them (`counters_wanted`): a run built with them (`Mesh.up`'s default,
  `pktlab up --counters`), or while a reader (the live view) touches `counters.want` (`want_counters`). On an idle
  mesh the poll was a sixth of the agents' CPU (scalefree:100, 0.036 of 0.24 cores);
* records agent restarts (an agent whose uptime went backwards) in `events.jsonl`;
* watches the agents' processes (AgentWatch): a death is an `agent_died` event (`list` and `status` show the run
  degraded while an agent is down), and the restart policy starts the agent again with the same identity
  (`agent_restart` with reason "restart policy"), unless the run was built without it (`up --no-restart`), the
  agent was stopped on purpose (Mesh.stop_agent: a crash fault, which its heal undoes) or it keeps dying
  (`restart_gave_up`).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import deque
from pathlib import Path

from node.agent.control_client import AgentClient
from testbed import runs
from testbed.events import AGENT_DIED, AGENT_RESTART, RESTART_GAVE_UP, CountersSampler, EventLog

COUNTERS_FILE = "counters.jsonl"
WANT_FILE = "counters.want"
WANT_TTL_S = 30.0          # a reader that stopped touching the want file for this long is gone


def want_counters(run_dir: Path) -> None:
    """A reader of counters.jsonl says it wants samples for the next WANT_TTL_S (call it again meanwhile)."""
    (Path(run_dir) / WANT_FILE).touch()


def counters_wanted(run_dir: Path, now: float) -> bool:
    """Sample the agents' counters this tick? (`now`: time.time(), the want file's mtime clock.)"""
    try:
        if json.loads((run_dir / "state.json").read_text()).get("sample_counters", True):
            return True
    except (OSError, ValueError):
        return True              # being rewritten: as before
    try:
        return now - (run_dir / WANT_FILE).stat().st_mtime < WANT_TTL_S
    except OSError:
        return False


def agents_of(run_dir: Path) -> dict[str, str]:
    state = json.loads((run_dir / "state.json").read_text())
    return {n: str(run_dir / "nodes" / n / "agent.sock") for n in state.get("agents", {})}


class AgentWatch:
    """Which agents died and which to start again, from what each tick sees (pure: the time is passed in).

    A death is reported once. A dead agent is restarted when the policy is on, it was not stopped on purpose,
    it has been dead for `grace` seconds (so a restart fault or a heal that starts it again itself is never
    raced) and it was restarted fewer than `limit` times in the last `window` seconds (a crash loop is
    reported, not fed)."""

    def __init__(self, grace: float, limit: int = 5, window: float = 60.0):
        self.grace, self.limit, self.window = grace, limit, window
        self.dead_since: dict[str, float] = {}
        self.restarts: dict[str, deque] = {}
        self.given_up: set[str] = set()

    def tick(self, now: float, agents: dict[str, dict], policy: bool) -> tuple[list, list, list]:
        """agents: {node: {"dead": bool, "stopped": bool}}. Returns (died, to restart, given up) node lists."""
        died, restart, gave_up = [], [], []
        for node, seen in agents.items():
            if not seen["dead"]:
                self.dead_since.pop(node, None)
                self.given_up.discard(node)
                continue
            if node not in self.dead_since:
                self.dead_since[node] = now
                died.append(node)
            if not policy or seen.get("stopped") or node in self.given_up or now - self.dead_since[node] < self.grace:
                continue
            recent = self.restarts.setdefault(node, deque())
            while recent and now - recent[0] > self.window:
                recent.popleft()
            if len(recent) >= self.limit:
                self.given_up.add(node)
                gave_up.append(node)
                continue
            recent.append(now)
            self.dead_since.pop(node)
            restart.append(node)
        return died, restart, gave_up


def _answers(sock: str) -> bool:
    try:
        AgentClient(sock, timeout=1).call("status")
        return True
    except Exception:  # noqa: BLE001 (any failure to answer is "not answering")
        return False


def watch_agents(run_dir: Path, watch: AgentWatch, events: EventLog, uptime: dict) -> None:
    """One tick of AgentWatch on the run's journal: report deaths, restart what the policy says."""
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return      # being rewritten, or the run is going away
    if state.get("status") != "ready":
        return
    seen = {}
    for node, rec in state.get("agents", {}).items():
        here = not rec.get("host")      # an agent on an SSH host or VM has no process here to look at
        dead = not (here and runs.alive(rec.get("pid", 0), rec.get("start"))) and \
            not _answers(str(run_dir / "nodes" / node / "agent.sock"))
        seen[node] = {"dead": dead, "stopped": bool(rec.get("stopped")), "pid": rec.get("pid"), "here": here}
    elsewhere = [n for n, s in seen.items() if s["dead"] and not s["here"]]
    if elsewhere:       # silent is not dead (a paused agent): ask its host, once per host
        from testbed.backends import for_run
        states = for_run(runs.Run(state["name"], run_dir, state)).node_states()
        for node in elsewhere:
            seen[node]["dead"] = states.get(node, {}).get("agent") is False
    died, restart, gave_up = watch.tick(time.monotonic(), seen, bool(state.get("restart_agents", True)))
    for node in died:
        events.append(AGENT_DIED, node=node, pid=seen[node]["pid"], stopped_on_purpose=seen[node]["stopped"])
    for node in gave_up:
        events.append(RESTART_GAVE_UP, node=node, restarts=watch.limit, window_s=watch.window)
    if restart:
        from testbed.mesh import Mesh          # only when there is something to restart: it pulls in the backend
        from testbed.topology import load
        mesh = Mesh(runs.Run(state["name"], run_dir, state), load(str(run_dir / "topology.yaml")))
        by_process: dict = {}
        for node in restart:       # nodes that shared an agent process come back in one again
            by_process.setdefault(seen[node]["pid"], []).append(node)
        for nodes in by_process.values():
            pid = mesh.restart_agents(nodes)
            for node in nodes:
                uptime.pop(node, None)        # its uptime starts again: not a restart to report twice
                events.append(AGENT_RESTART, node=node, reason="restart policy", pid=pid)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.monitor", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sockets = agents_of(args.run_dir)
    events = EventLog(args.run_dir / "events.jsonl")
    sampler = CountersSampler(EventLog(args.run_dir / COUNTERS_FILE), sockets, interval_s=args.interval)
    watch = AgentWatch(grace=max(2.0, 2 * args.interval))
    uptime: dict[str, float] = {}
    next_at = time.monotonic()
    while not stop and args.run_dir.is_dir():
        if counters_wanted(args.run_dir, time.time()):
            sampler.sample_once()
        for node, path in sockets.items():
            try:
                now = AgentClient(path, timeout=1).call("status").get("uptime_s", 0.0)
            except Exception:  # a down agent is the sampler's news, not ours
                continue
            if node in uptime and now < uptime[node]:
                events.append(AGENT_RESTART, node=node, previous_uptime_s=uptime[node])
            uptime[node] = now
        try:
            watch_agents(args.run_dir, watch, events, uptime)
        except Exception as e:  # noqa: BLE001 (the monitor outlives whatever one tick meets)
            events.append("monitor_error", error=f"{type(e).__name__}: {e}")
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
