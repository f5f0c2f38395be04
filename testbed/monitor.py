"""The run monitor: `python -m testbed.monitor RUN_DIR [--interval S]`.

One small process per run, started by `pktlab up` in the host namespace (it only talks to the agents' Unix sockets)
and tagged with the run id like every process of the run, so `down`/`cleanup` stop it with the rest. It samples every
agent's counters into `counters.jsonl` for the report's throughput plots, and records agent restarts (an agent whose
uptime went backwards) in `events.jsonl`.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from node.agent.control_client import AgentClient
from testbed.events import AGENT_RESTART, CountersSampler, EventLog

COUNTERS_FILE = "counters.jsonl"


def agents_of(run_dir: Path) -> dict[str, str]:
    state = json.loads((run_dir / "state.json").read_text())
    return {n: str(run_dir / "nodes" / n / "agent.sock") for n in state.get("agents", {})}


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
    uptime: dict[str, float] = {}
    next_at = time.monotonic()
    while not stop and args.run_dir.is_dir():
        sampler.sample_once()
        for node, path in sockets.items():
            try:
                now = AgentClient(path, timeout=1).call("status").get("uptime_s", 0.0)
            except Exception:  # a down agent is the sampler's news, not ours
                continue
            if node in uptime and now < uptime[node]:
                events.append(AGENT_RESTART, node=node, previous_uptime_s=uptime[node])
            uptime[node] = now
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
