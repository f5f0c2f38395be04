"""Scale benchmark (issue 12): real meshes at real size, pktlab against yggdrasil on the same namespaces.

For each topology, `pktlab up` as a user runs it (namespaces, links, agents; static paths up to
servers.STATIC_PATHS_UP_TO nodes, route servers above), then:

* time to ready: until `Mesh.up` returns (every agent healthy, the ready-check's sample of pairs answering);
* first ping: another sample of pairs, each pinged ONCE right after ready (no lost first packet, issue 12 item 3);
* memory per node: proportional set size (PSS, shared pages split between processes) of the agent processes / nodes;
* idle CPU: CPU time of the agent processes over a quiet window after ready (nothing sent), in cores;
* sampled delivery: every --every seconds over --idle seconds, a sample of pairs pings once each;
* false peer-down events: the agents' peer_down counters over that idle time (nothing is cut: every one is false).
  With --hog, one busy process per core runs beside the mesh the whole idle time (the busy-machine check).

Baseline in the same run, where it fits (--ygg-max nodes): yggdrasil (the Debian package) on the same namespaces and
links, one process per node peering over TCP on the same link addresses: time until the same first-ping sample
answers, PSS per node, idle CPU, sampled delivery, and peer disconnections in its logs.

Quoted beside them (not measured here): meshnet-lab's published limits on a 12-core server, as issue 12 cites them:
cjdns 121 nodes, yggdrasil 1156 nodes.

`python -m bench.scale` runs the CI-sized sets (grid:10x10, freifunk-ulm); `--slow` adds the big ones (grid:32x32,
Freifunk Berlin, Bremen, Altdorf, Aachen, a 1000-node generator mesh with route servers); `--set SPEC` (repeated) picks.
Writes bench/results/scale.json (rows merged by set and mode with the previous file) and scale.png.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from bench.common import RESULTS, console, previous, table, write
from bench.yggdrasil import YGG, YGG_PORT, stop_procs, wait_listening, write_config
from testbed import runs
from testbed.backends import exec_in
from testbed.mesh import Mesh
from testbed.waiting import wait_until

FAST = ["grid:10x10", "freifunk-ulm"]
SLOW = ["grid:32x32", "freifunk-berlin", "freifunk-bremen", "freifunk-altdorf", "freifunk-aachen",
        "smallworld:1000,4,0.05,route_servers=2"]
QUOTED = {"meshnet-lab cjdns (12 cores)": 121, "meshnet-lab yggdrasil (12 cores)": 1156}
TICK = os.sysconf("SC_CLK_TCK")


# -- process figures ----------------------------------------------------------------------------------------
def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])        # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def pss_kib(pids) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, ValueError):
            pass
    return total


def idle_cores(pids, seconds: float) -> float:
    c0, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pids) - c0) / (time.monotonic() - t0)


def load() -> float:
    return round(os.getloadavg()[0], 1)


def start_hog() -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(os.cpu_count() or 1)]


# -- pinging ------------------------------------------------------------------------------------------------
def ping_pairs(mesh, pairs, address) -> int:
    """Each pair pings once (2 s timeout), 64 at a time; how many answered."""
    ok = 0
    for start in range(0, len(pairs), 64):
        procs = [exec_in(mesh.run, a, ["ping", "-6", "-n", "-c", "1", "-W", "2", address(b)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a, b in pairs[start:start + 64]]
        ok += sum(p.wait() == 0 for p in procs)
    return ok


def sample(mesh, count: int, salt: int):
    pairs = mesh.pairs(sample=None)
    return random.Random(mesh.run.state["seed"] + salt).sample(pairs, min(count, len(pairs)))


def idle_rounds(mesh, args, address, down_events) -> dict:
    """--idle seconds, a round of pings every --every seconds; delivery per round and false peer-down events."""
    hog = start_hog() if args.hog else []
    rounds, started = [], time.monotonic()
    before = down_events()
    try:
        while True:                            # rounds at 0, every, 2 * every, ... up to idle seconds
            pairs = sample(mesh, args.sample, salt=100 + len(rounds))
            rounds.append(ping_pairs(mesh, pairs, address) / len(pairs))
            due = started + len(rounds) * args.every
            if due > started + args.idle:
                break
            time.sleep(max(0.0, due - time.monotonic()))
    finally:
        stop_procs(hog)
    return {"delivery_rounds": [round(r, 3) for r in rounds], "delivery_min": min(rounds),
            "delivery_mean": round(sum(rounds) / len(rounds), 4), "false_peer_down": down_events() - before,
            "idle_s": round(time.monotonic() - started), "hog_processes": len(hog)}


def set_name(spec: str, args) -> str:
    """The row's name: the spec, and whether every component of an imported mesh came up (by default, as
    `pktlab up`, only its largest)."""
    return f"{spec} --allow-disconnected" if args.allow_disconnected else spec


# -- pktlab -------------------------------------------------------------------------------------------------
def peer_down_total(mesh) -> int:
    """The agents' peer_down counters, summed (an agent that does not answer fails the benchmark; a route server
    busy with a 1000-node mesh's queries may take a while)."""
    return sum(mesh.agent(n).call("counters", timeout=60)["tun"]["peer_down"] for n in mesh.nodes)


def run_pktlab(spec: str, args) -> dict:
    row = {"set": set_name(spec, args), "system": "pktlab", "load_before": load()}
    t0 = time.monotonic()
    try:
        mesh = Mesh.up(spec, name=f"scale-{os.getpid()}", allow_disconnected=args.allow_disconnected,
                       wait=args.wait, sample_counters=False)
    except Exception as e:          # a set that does not come up is a result too
        row.update(error=str(e)[:300], up_failed_after_s=round(time.monotonic() - t0, 1))
        return row
    try:
        row["ready_s"] = round(time.monotonic() - t0, 1)
        row.update(nodes=len(mesh.topo.nodes), links=len(mesh.topo.links), routing=mesh.run.state["routing"],
                   route_servers=len(mesh.topo.nodes_with_role("route_server")))
        pairs = sample(mesh, args.sample, salt=1)
        row["first_ping"] = f"{ping_pairs(mesh, pairs, mesh.ip6)}/{len(pairs)}"
        pids = {rec["pid"] for rec in mesh.run.state["agents"].values()}
        row["processes"] = len(pids)
        row["pss_per_node_kib"] = round(pss_kib(pids) / len(mesh.topo.nodes))
        row["idle_cores"] = round(idle_cores(pids, args.cpu_window), 3)
        row["load_idle"] = load()
        row.update(idle_rounds(mesh, args, mesh.ip6, lambda: peer_down_total(mesh)))
        row["load_after"] = load()
    finally:
        mesh.down()
    return row


# -- yggdrasil ----------------------------------------------------------------------------------------------
def ygg_disconnects(logs) -> int:
    count = 0
    for path in logs:
        with open(path, errors="replace") as f:
            count += sum("Disconnected" in line for line in f)
    return count


def run_yggdrasil(spec: str, args) -> dict:
    row = {"set": set_name(spec, args), "system": "yggdrasil", "load_before": load()}
    mesh = Mesh.up(spec, name=f"scaley-{os.getpid()}", agents=False, allow_disconnected=args.allow_disconnected)
    procs, logs, addrs = [], [], {}
    workdir = tempfile.mkdtemp(prefix="bench-scale-ygg-")        # configs and logs, removed with the mesh
    try:
        row.update(nodes=len(mesh.topo.nodes), links=len(mesh.topo.links))
        listen = {n: [] for n in mesh.topo.nodes}
        dial = {n: [] for n in mesh.topo.nodes}
        order = {n: i for i, n in enumerate(mesh.topo.nodes)}
        for rec in mesh.run.state["links"]:
            listen[rec["a"]].append(rec["a_addr"])
            listen[rec["b"]].append(rec["b_addr"])
            late, early_addr = (rec["a"], rec["b_addr"]) if order[rec["a"]] > order[rec["b"]] else (rec["b"], rec["a_addr"])
            dial[late].append(f"tcp://[{early_addr}]:{YGG_PORT}")     # one TCP connection per link
        t0 = time.monotonic()
        for n in mesh.topo.nodes:              # in order: whoever a node dials is already listening
            path, addrs[n] = write_config(workdir, n, dial[n], [f"tcp://[{a}]:{YGG_PORT}" for a in listen[n]])
            log_path = os.path.join(workdir, f"ygg-{n}.log")
            with open(log_path, "w") as log:
                procs.append(exec_in(mesh.run, n, [YGG, "-useconffile", path], stdout=log, stderr=log,
                                     start_new_session=True))
            logs.append(log_path)
            wait_listening(log_path, len(listen[n]))
        row["started_s"] = round(time.monotonic() - t0, 1)
        pairs = sample(mesh, args.sample, salt=1)
        answered = []

        def all_answer():
            answered.append(ping_pairs(mesh, pairs, addrs.get))
            return answered[-1] == len(pairs)
        if wait_until(all_answer, args.wait, interval=1):
            row["ready_s"] = round(time.monotonic() - t0, 1)
        row["ready_answered"] = f"{answered[-1]}/{len(pairs)}"
        row["first_ping"] = f"{answered[0]}/{len(pairs)} (pinged while converging)"
        pids = [p.pid for p in procs]
        row["processes"] = len(pids)
        row["pss_per_node_kib"] = round(pss_kib(pids) / len(mesh.topo.nodes))
        row["idle_cores"] = round(idle_cores(pids, args.cpu_window), 3)
        row["load_idle"] = load()
        row.update(idle_rounds(mesh, args, addrs.get, lambda: ygg_disconnects(logs)))
        row["load_after"] = load()
    finally:
        stop_procs(procs)
        mesh.down()
        shutil.rmtree(workdir, ignore_errors=True)
    return row


# -- report -------------------------------------------------------------------------------------------------
def plot(rows, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in rows if "ready_s" in r and "error" not in r]
    sets = list(dict.fromkeys(f"{r['set']}{' +hog' if r.get('hog_processes') else ''}" for r in ok))
    figures = [("ready_s", "time to ready (s)"), ("pss_per_node_kib", "memory per node (PSS, KiB)"),
               ("idle_cores", "idle CPU (cores)"), ("delivery_min", "worst sampled delivery")]
    fig, axes = plt.subplots(1, len(figures), figsize=(4.5 * len(figures), 4.5))
    for ax, (key, title) in zip(axes, figures):
        for k, system in enumerate(("pktlab", "yggdrasil")):
            values = [next((r.get(key) or 0 for r in ok if r["system"] == system and
                            f"{r['set']}{' +hog' if r.get('hog_processes') else ''}" == s), 0) for s in sets]
            ax.bar([i + 0.4 * k for i in range(len(sets))], values, width=0.4, label=system)
        ax.set_xticks([i + 0.2 for i in range(len(sets))], sets, rotation=40, ha="right", fontsize=8)
        ax.set_title(title)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", dest="sets",
                    help="a topology (repeat it; default: the CI-sized ones, and the big ones with --slow)")
    ap.add_argument("--slow", action="store_true", help="also the big meshes (1000+ nodes: tens of minutes)")
    ap.add_argument("--idle", type=float, default=90, help="idle seconds after ready (issue 12: 600; busy: 300)")
    ap.add_argument("--every", type=float, default=30, help="seconds between delivery samples")
    ap.add_argument("--sample", type=int, default=60, help="pairs per delivery sample")
    ap.add_argument("--cpu-window", type=float, default=20, help="quiet seconds over which idle CPU is measured")
    ap.add_argument("--wait", type=float, default=600, help="seconds for a mesh to become ready")
    ap.add_argument("--ygg-max", type=int, default=250, help="largest mesh yggdrasil runs on as the baseline")
    ap.add_argument("--no-ygg", action="store_true")
    ap.add_argument("--allow-disconnected", action="store_true", default=None,
                    help="every component of an imported mesh (by default its largest, as `pktlab up`)")
    ap.add_argument("--hog", action="store_true", help="one busy process per core beside the mesh while it idles")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        console.print("bench.scale needs root")
        return 2
    sets = args.sets or FAST + (SLOW if args.slow else [])
    rows, interrupted = [], False
    try:
        for spec in sets:
            console.print(f"{spec}: pktlab (load {load()}) ...")
            rows.append(run_pktlab(spec, args))
            console.print(json.dumps(rows[-1]))
            nodes = rows[-1].get("nodes")
            if not args.no_ygg and not args.hog and nodes and nodes <= args.ygg_max:
                console.print(f"{spec}: yggdrasil (load {load()}) ...")
                try:
                    rows.append(run_yggdrasil(spec, args))
                except Exception as e:
                    rows.append({"set": spec, "system": "yggdrasil", "error": str(e)[:300]})
                console.print(json.dumps(rows[-1]))
    except (KeyboardInterrupt, runs.Interrupted) as e:      # the sets measured before are still written
        console.print(f"interrupted: {e or 'Ctrl-C'}")
        interrupted = True
    key = lambda r: (r["set"], r["system"], bool(r.get("hog_processes")))   # noqa: E731
    merged = {key(r): r for r in (previous("scale") or {}).get("rows", [])}
    merged.update({key(r): r for r in rows})
    all_rows = list(merged.values())
    console.print(table("pktlab at scale (idle: nothing sent but the delivery samples; baseline yggdrasil, same run)",
                        ["set", "system", "nodes", "links", "routing", "ready s", "first ping", "KiB/node",
                         "idle cores", "delivery min", "false peer-down", "hog", "load", "error"],
                        [[r["set"], r["system"], r.get("nodes"), r.get("links"), r.get("routing"), r.get("ready_s"),
                          r.get("first_ping"), r.get("pss_per_node_kib"), r.get("idle_cores"),
                          r.get("delivery_min"), r.get("false_peer_down"), r.get("hog_processes"),
                          r.get("load_idle"), (r.get("error") or "")[:60]] for r in all_rows]))
    path = write("scale", {"quoted": QUOTED, "cores": os.cpu_count(), "rows": all_rows})
    plot(all_rows, RESULTS / "scale.png")
    console.print(f"written to {path} and {RESULTS / 'scale.png'}")
    return 130 if interrupted else 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
