"""Measuring a running mesh from the outside: ping, iperf3, the agents' counters, process states, and waiting
for a condition."""
from __future__ import annotations

import json
import re
import subprocess
import time

from node.agent.control_client import AgentError
from testbed.faults.base import End, FaultError
from testbed.runs import proc_state  # noqa: F401 (tests read a process's state through here)


def ping_stats(mesh, a: str, b: str, count: int = 10, interval: float = 0.2, wait: float = 1.0) -> dict:
    """ICMPv6 echo from a to b over their fc00::/8 addresses: sent, received, loss, dups, min/avg/max/mdev ms."""
    argv = ["ping", "-6", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait), mesh.ip6(b)]
    r = mesh.exec(a, argv, timeout=count * interval + wait + 10)
    return parse_ping(r.stdout, count)


def parse_ping(out: str, count: int) -> dict:
    """The summary of iputils ping: sent, received, dups, loss (fraction) and min/avg/max/mdev in ms (None when
    nothing came back)."""
    m = re.search(r"(\d+) packets transmitted, (\d+) received(?:, \+(\d+) duplicates)?", out)
    sent, received, dups = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else (count, 0, 0)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    stats = dict(zip(("min", "avg", "max", "mdev"), map(float, rtt.groups()))) if rtt else \
        dict.fromkeys(("min", "avg", "max", "mdev"))
    return {"sent": sent, "received": received, "dups": dups, "loss": 1 - received / sent if sent else 1.0,
            **stats}


def mean_rtt(mesh, a: str, b: str) -> float | None:
    """The average RTT of 10 pings (ms)."""
    return ping_stats(mesh, a, b, count=10, interval=0.05)["avg"]


def iperf(mesh, client: str, server: str, seconds: float = 2.0, reverse: bool = False, port: int = 5201,
          extra: list[str] | None = None, omit: float = 0.5, attempts: int = 3) -> float | None:
    """TCP throughput client -> server (bit/s, as received) with iperf3 over the fc00::/8 addresses; the first
    `omit` seconds (slow start, a shaper's initial burst) are not counted. A test that iperf3 itself reports as
    failed (its control connection lost on a busy machine) is run again, up to `attempts` times, each with a fresh
    one-off server; None only when none of them measured anything."""
    for _ in range(attempts):
        bps = _iperf_once(mesh, client, server, seconds, reverse, port, extra or [], omit)
        if bps is not None:
            return bps
    return None


def _iperf_once(mesh, client, server, seconds, reverse, port, extra, omit) -> float | None:
    from testbed.backends import exec_in
    srv = exec_in(mesh.run, server, ["iperf3", "-s", "-1", "-p", str(port), "-B", mesh.ip6(server)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(30):       # the server may take a moment to listen
            r = mesh.exec(client, ["iperf3", "-c", mesh.ip6(server), "-p", str(port), "-t", str(seconds), "-J",
                                   "-O", str(omit)] + (["-R"] if reverse else []) + extra,
                          timeout=seconds + 20)
            try:
                data = json.loads(r.stdout)
            except ValueError:
                data = {}
            if "error" in data and "connect" in data["error"]:
                time.sleep(0.1)
                continue
            return data.get("end", {}).get("sum_received", {}).get("bits_per_second")
        return None
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


def mbit(bps) -> str:
    """A throughput for people: `1.25 Mbit/s`, or `nothing` when none was measured."""
    return "nothing" if bps is None else f"{bps / 1e6:.2f} Mbit/s"


def drops(mesh, node: str) -> int:
    """Every drop a node counted: node-level reasons, per-interface and switch drops."""
    c = mesh.agent(node).call("counters", timeout=3)
    total = sum(v for v in (c.get("drops") or {}).values() if isinstance(v, int))
    for i in (c.get("interfaces") or {}).values():
        total += sum(v for v in (i.get("drops") or {}).values() if isinstance(v, int))
    total += sum(v for k, v in (c.get("switch") or {}).items() if "drop" in k and isinstance(v, int))
    return total


def interface_counters(mesh, end: End) -> dict:
    """The counters of an end's interface: tx_packets (sent on the wire) and the emulation's lost, reordered ..."""
    try:
        c = mesh.agent(end.node).call("counters", timeout=3)
    except (OSError, AgentError, ValueError) as e:
        raise FaultError(f"counters of {end.node}: {e}") from None
    i = c.get("interfaces", {}).get(end.ifname, {})
    return {"tx_packets": i.get("tx_packets", 0), **(i.get("emulation") or {})}


def emulation_counter(mesh, end: End, name: str) -> int:
    """One counter (lost, reordered, ...) of the link emulation on an end's interface."""
    try:
        c = mesh.agent(end.node).call("counters", timeout=3)
    except (OSError, AgentError, ValueError) as e:
        raise FaultError(f"counters of {end.node}: {e}") from None
    return (c.get("interfaces", {}).get(end.ifname, {}).get("emulation") or {}).get(name, 0)
