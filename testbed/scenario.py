"""Scenarios: a topology, traffic, a timeline of faults and actions, and assertions with "within T" semantics.

A scenario file (YAML)::

    name: link-flap
    description: one link flaps; traffic across it recovers after the flapping stops
    topology: "line:3,rate=10mbit"        # generator, bundled name, or file (relative to the scenario file,
    seed: 7                               #   the working directory or the repository)
    reduce: 30                            # optional: keep a connected part of this many nodes (big imports)
    requires: [freifunk-data]             # optional: capabilities; missing ones make the scenario "skipped"
    traffic:                              # background traffic for the whole run
      - ping: {from: n1, to: n3, interval: 0.2}      # a probe: reachability over time, used by `outage`
      - iperf: {from: n1, to: n3, at: 2, seconds: 3}
      - command: {node: n1, run: "ip -6 route", at: 0}
    timeline:                             # by seconds from the start, in order
      - {at: 1, fault: "flap n1--n2 period=1s", name: flap}
      - {at: 5, heal: flap}                          # or heal: all
      - {at: 5, action: reroute}                     # or restart NODE, or a command {node:, run:}
      - {at: 6, expect: {reachable: {from: n1, to: n3}, within: 10}}
      - {at: {height: 20}, fault: "partition a1,a2"}   # when a chain node first reaches block 20
    assertions:                           # checked at the end
      - outage: {from: n1, to: n3, at_most: 6}
      - {chains_agree: {within_blocks: 1}, within: 60}

Assertions: reachable / unreachable {from, to}, throughput {from, to, at_least, seconds, mss, parallel}, outage {from, to,
at_most} (from a ping probe), path_changed {from, to} (the label src uses for dst differs from the start),
counters {node, counter, at_least | at_most} (counter: "drops" for all drops, or a dotted path into the agent's
`counters` answer; measured as the increase since the start), agent_healthy {node}. "within T": the check is
retried until it holds or T seconds pass.

On a topology with a PKT chain (testbed/services.py): chain_height {at_least, nodes (default: every chain node)},
chains_agree {within_blocks (default 0: the same tip)}, reorg {node (default: any), at_least (default 1)},
balance {node, at_least (PKT, spendable)}. With markets (role issuer): swap {buyer, token, outcome (completed or
refunded)}, lease_active {lease, holder (a node)}, contended_throughput {from, against, to, at_least, at_most}
(UDP floods from both at once: what `from` gets); actions market_sell {node, lease, price (PKT), term} and
market_buy {buyer, seller, token, wait (s, default 120)} (a purchase of a declared lease moves the buyer's traffic
onto it, testbed/market_view.py). A timeline entry at {height: N} runs when the first chain node reaches
height N (waiting at most the entry's `within`, default 600 s); a timeline with height entries runs in file order
(each entry given in seconds still waits for its second), one without them in order of `at`.

Determinism: the seed fixes the topology (generator seed), node keys, and every random choice the scenario asks
for (`{random_link}`, `{random_spare_link}` (not a bridge), `{random_node}` anywhere in traffic, timeline and
assertions); `--seed` replays a run's timeline (recorded in Result.timeline and the event log).
"""
from __future__ import annotations

import copy
import dataclasses
import random
import re
import threading
import time
from collections import deque
from pathlib import Path

import networkx as nx

from node.agent.control_client import AgentError
from testbed import faults as F
from testbed.events import EventLog
from testbed.faults.base import end_of
from testbed.faults.measure import mbit
from testbed.paths import MESHNET_LAB
from testbed.runs import keep_records
from testbed.scenario_check import ASSERTION_KINDS, ScenarioError, check_against, check_shape
from testbed.topology import Topology, TopologyError, from_dict, load, parse_rate, parse_text, validate
from testbed.waiting import wait_until

SCENARIO_DIR = Path(__file__).parent / "scenarios"
REPO = Path(__file__).resolve().parent.parent
MAX_FILE_BYTES = 1 << 20


# -- loading ----------------------------------------------------------------------------------------------

def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):      # a name too long or with NUL bytes is no file of ours
        return False


def find_scenario(ref: str) -> Path:
    """A path, or the name of a bundled scenario (`link-flap`)."""
    for cand in (Path(ref), SCENARIO_DIR / ref, SCENARIO_DIR / f"{ref}.yaml"):
        if _is_file(cand):
            return cand
    names = ", ".join(p.stem for p in sorted(SCENARIO_DIR.glob("*.yaml")))
    shown = ref if len(ref) <= 80 else ref[:77] + "..."
    raise ScenarioError(f"no scenario {shown!r} (bundled: {names})")


def load_scenario(ref) -> dict:
    """A scenario file (or bundled name, or a dict), read and checked against the schema (scenario_check)."""
    if isinstance(ref, dict):
        data, where, file = copy.deepcopy(ref), str(ref.get("name", "scenario")), ref.get("_file")
        data.pop("_file", None)
    else:
        path = find_scenario(str(ref))
        where = file = str(path)
        try:
            raw = path.read_bytes()[:MAX_FILE_BYTES + 1]
            if len(raw) > MAX_FILE_BYTES:
                raise ScenarioError(f"{path}: over {MAX_FILE_BYTES} bytes: not a scenario")
            text = raw.decode("utf-8")
            data = parse_text(text, str(path), "yaml")
        except UnicodeDecodeError as e:
            raise ScenarioError(f"{path}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
        except OSError as e:
            raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
        except TopologyError as e:        # parse_text's YAML errors name the file, line and column
            raise ScenarioError(str(e)) from None
    try:
        check_shape(data, where)
    except RecursionError:
        raise ScenarioError(f"{where}: nested too deeply") from None
    unknown = sorted(set(data.get("requires") or []) - set(capabilities()))
    if unknown:
        raise ScenarioError(f"{where}: requires: unknown capabilities {', '.join(unknown)} (known: "
                            f"{', '.join(capabilities())})")
    data["_file"] = file
    return data


def plan(s: dict, topo: Topology, seed: int) -> dict:
    """The scenario's traffic, timeline (in time order) and assertions with every placeholder filled from the
    seed: the same seed gives the same choices (the order of the draws is traffic, timeline, assertions)."""
    rng = random.Random(seed)
    nodes = list(topo.nodes)
    links = [l.name for l in topo.links]
    bridges = {frozenset(e) for e in nx.bridges(topo.graph())}
    # a link whose loss keeps the mesh connected (not a bridge), so a reroute can go around it
    spare = [l.name for l in topo.links if frozenset((l.a, l.b)) not in bridges]

    def subst(text):
        if not isinstance(text, str):
            return text
        text = re.sub(r"\{random_link\}", lambda m: rng.choice(links), text)
        text = re.sub(r"\{random_spare_link\}", lambda m: rng.choice(spare or links), text)
        return re.sub(r"\{random_node\}", lambda m: rng.choice(nodes), text)

    def fill(obj):
        if isinstance(obj, dict):
            return {k: fill(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [fill(v) for v in obj]
        return subst(obj)
    traffic = fill(s.get("traffic") or [])
    timeline = fill(s.get("timeline") or [])
    if not any(_height_of(e) is not None for e in timeline):     # by block height: in the file's order
        timeline.sort(key=lambda e: e.get("at", 0))
    return {"traffic": traffic, "timeline": timeline, "assertions": fill(s.get("assertions") or [])}


def _assertion_kind(a: dict) -> str:
    return next(k for k in ASSERTION_KINDS if k in a)


def _height_of(entry: dict) -> int | None:
    """N of an entry `at: {height: N}`, else None."""
    at = entry.get("at")
    return at["height"] if isinstance(at, dict) else None


def resolve_topology(s: dict, seed: int) -> Topology:
    ref = s["topology"]
    if isinstance(ref, dict):
        topo = from_dict(ref, source=s.get("name", "scenario"))
    else:
        spec = str(ref)
        for base in ([Path(s["_file"]).parent] if s.get("_file") else []) + [Path.cwd(), REPO]:
            if _is_file(base / spec):
                spec = str(base / spec)
                break
        else:
            if "/" in spec or spec.endswith((".json", ".yaml", ".yml", ".graphml", ".gml")):
                raise ScenarioError(f"topology file {ref!r} not found")
        topo = load(spec, seed=seed)
    if s.get("reduce"):
        topo = reduce_topology(topo, int(s["reduce"]))
    if topo.seed is None:
        topo.seed = seed
    return topo


def reduce_topology(topo: Topology, size: int) -> Topology:
    """A connected part of `size` nodes, breadth-first from the best-connected node (deterministic) inside the
    densest k-core that still has that many nodes, so the part keeps the mesh's cycles (alternative paths)
    rather than the tree-like fringe around a gateway."""
    full = topo.graph()
    if size >= len(full):
        return topo
    g = full
    for k in range(2, 64):
        core = nx.k_core(full, k)
        if len(core) < size:
            break
        g = core
    g = g.subgraph(max(nx.connected_components(g), key=len))
    start = max(sorted(g.nodes), key=g.degree)
    keep, queue = [start], deque([start])
    while queue and len(keep) < size:
        for nb in sorted(g.neighbors(queue.popleft())):
            if nb not in keep and len(keep) < size:
                keep.append(nb)
                queue.append(nb)
    kept = set(keep)
    out = dataclasses.replace(topo, nodes={n: topo.nodes[n] for n in topo.nodes if n in kept},
                              links=[l for l in topo.links if l.a in kept and l.b in kept],
                              name=f"{topo.name}-{size}", warnings=[])
    validate(out)
    return out


# -- capabilities a scenario may need ---------------------------------------------------------------------

def capabilities() -> dict[str, str | None]:
    """capability -> None if available, else why not."""
    data = MESHNET_LAB / "freifunk"
    return {"freifunk-data": None if data.is_dir() else f"needs the meshnet-lab data in {data}"}


# -- the run ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    message: str
    at: float


@dataclasses.dataclass
class Result:
    name: str
    status: str                  # passed, failed, skipped, error
    seed: int | None
    checks: list[Check] = dataclasses.field(default_factory=list)
    reason: str = ""
    run_dir: str = ""
    timeline: list[dict] = dataclasses.field(default_factory=list)
    kept_run: str = ""           # the run left running (keep=True)
    records: str = ""            # where a run that did not pass left its journal, events and logs

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "skipped")


class Probe(threading.Thread):
    """Pings dst from src every interval; keeps (t, reachable) samples and logs ping events."""

    def __init__(self, runner, src: str, dst: str, interval: float):
        super().__init__(daemon=True)
        self.runner, self.src, self.dst, self.interval = runner, src, dst, interval
        self.samples: list[tuple[float, bool]] = []
        self.stop = threading.Event()

    def run(self):
        try:
            self._loop()
        except Exception as e:      # a probe that dies fails the scenario: its samples stop, the outage is unknown
            self.runner.record(f"traffic ping {self.src}->{self.dst}", False, f"died: {type(e).__name__}: {e}")

    def _loop(self):
        mesh = self.runner.mesh
        while not self.stop.is_set():
            t = self.runner.now()
            # a short answer timeout, so a lost probe does not hide the next interval
            r = mesh.exec(self.src, ["ping", "-6", "-n", "-c", "1", "-W", "0.5", mesh.ip6(self.dst)], timeout=5)
            m = re.search(r"time=([\d.]+)", r.stdout)
            ok = r.returncode == 0
            self.samples.append((t, ok))
            self.runner.log.append("ping", self.src, None, src=self.src, dst=self.dst, reachable=ok,
                                   rtt_ms=float(m.group(1)) if m else None)
            self.stop.wait(max(0.0, self.interval - (self.runner.now() - t)))

    def longest_outage(self) -> float:
        worst, start = 0.0, None
        for t, ok in self.samples:
            if not ok and start is None:
                start = t
            elif ok and start is not None:
                worst, start = max(worst, t - start), None
        if start is not None and self.samples:
            worst = max(worst, self.samples[-1][0] - start + self.interval)
        return worst


class Runner:
    """Runs one scenario on a fresh mesh (or on `mesh` if given) and collects the checks."""

    def __init__(self, scenario, seed: int | None = None, mesh=None, progress=None, keep: bool = False,
                 mesh_options: dict | None = None):
        self.s = load_scenario(scenario)
        self.mesh_options = mesh_options or {}   # where a mesh it builds lives: backend=, hosts= (Mesh.up)
        self.where = self.s["_file"] or str(self.s.get("name", "scenario"))
        self.seed = int(seed if seed is not None else self.s.get("seed", 1))
        self.mesh = mesh
        self.own_mesh = mesh is None
        self.keep = keep
        self.progress = progress or (lambda text: None)
        self.result = Result(self.s.get("name", "scenario"), "running", self.seed)
        self.names: dict[str, str] = {}       # timeline fault name -> fault id
        self.probes: dict[tuple[str, str], Probe] = {}
        self.threads: list[threading.Thread] = []
        self.start_labels: dict[tuple[str, str], str | None] = {}
        self.start_counters: dict[str, dict] = {}
        self.t0 = 0.0
        self.log = None
        self.plan: dict | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def prepare(self) -> Topology:
        """The topology and the filled plan, checked against each other: everything that can be wrong with the
        scenario itself fails here, before a mesh is built (ScenarioError, TopologyError)."""
        topo = self.mesh.topo if self.mesh is not None else resolve_topology(self.s, self.seed)
        self.plan = plan(self.s, topo, self.seed)
        check_against(self.plan, topo, self.where)
        return topo

    def run(self) -> Result:
        missing = [(c, why) for c, why in capabilities().items() if c in (self.s.get("requires") or []) and why]
        if missing:
            self.result.status, self.result.reason = "skipped", "; ".join(why for _, why in missing)
            return self.result
        try:
            topo = self.prepare()
            if self.mesh is None:
                from testbed.mesh import Mesh
                self.progress(f"building {topo.name}: {len(topo.nodes)} nodes, {len(topo.links)} links")
                self.mesh = Mesh.up(topo, seed=self.seed, wait=float(self.s.get("wait", 120)), **self.mesh_options)
            self.result.run_dir = str(self.mesh.run.dir)
            self.log = EventLog(self.mesh.run.path("events.jsonl"))
            self.log.append("run_start", scenario=self.result.name, seed=self.seed)
            self._execute()
        except Exception as e:    # whatever stops the run is its result, with what happened so far
            self.result.status, self.result.reason = "error", f"{type(e).__name__}: {e}"
        finally:
            self._stop_traffic()
            if self.result.status == "running":
                self.result.status = "passed" if all(c.ok for c in self.result.checks) else "failed"
            if self.mesh is not None:
                self._finish()
        return self.result

    def _finish(self) -> None:
        """Heal what is left, close the event log; a mesh of our own is kept (--keep) or removed, and the records
        of a run that did not pass are kept first (testbed/runs.keep_records)."""
        try:
            F.heal(self.mesh, check=False)
        except (F.FaultError, OSError):
            pass
        if self.log:
            self.log.append("run_end", scenario=self.result.name, status=self.result.status)
            self.log.close()
        if not self.own_mesh:
            return
        if self.keep:
            self.result.kept_run = self.mesh.run.name
            return
        if self.result.status != "passed":
            try:
                self.mesh.backend.collect_logs()    # agents on other hosts log there
                self.result.records = str(keep_records(self.mesh.run, "scenarios"))
            except (OSError, RuntimeError):
                pass
        self.mesh.down()

    def _execute(self) -> None:
        traffic, timeline, assertions = self.plan["traffic"], self.plan["timeline"], self.plan["assertions"]
        for t in traffic:
            if "ping" in t:
                p = t["ping"]
                self._probe(p["from"], p["to"], float(p.get("interval", 0.2)))
        self._remember_start(timeline + [{"expect": a} for a in assertions])
        self.t0 = time.monotonic()
        for p in self.probes.values():
            p.start()
        for t in traffic:
            if "iperf" in t or "command" in t:
                self._later(t)
        for entry in timeline:
            height = _height_of(entry)
            if height is not None:
                self._wait_height(height, float(entry.get("within", 600)))
            else:
                wait = entry.get("at", 0) - self.now()
                if wait > 0:
                    time.sleep(wait)
            self.result.timeline.append({"at": round(self.now(), 2), **({"height": height} if height is not None
                                                                        else {}),
                                         **{k: v for k, v in entry.items() if k not in ("at", "within")}})
            self._step(entry)
        end = float(self.s.get("duration", 0))
        if end > self.now():
            time.sleep(end - self.now())
        self._stop_traffic()
        for a in assertions:
            self._assert(a)

    def _wait_height(self, height: int, within: float) -> None:
        def top():
            heights = [st.get("height", -1) for st in self.mesh.chain()["nodes"].values()]
            return max(heights, default=-1) >= height
        if not self.mesh.chain()["nodes"]:
            raise ScenarioError(f"at: {{height: {height}}} needs a topology with a chain node")
        self.progress(f"t={self.now():5.1f}s waiting for block {height}")
        if not wait_until(top, within, interval=0.3):
            raise ScenarioError(f"no chain node reached height {height} within {within:g} s")

    def _remember_start(self, entries) -> None:
        for e in entries:
            a = e.get("expect")
            if not a:
                continue
            kind = _assertion_kind(a)
            body = a[kind]
            if kind == "path_changed":
                self.start_labels[(body["from"], body["to"])] = self._label(body["from"], body["to"])
            if kind == "counters":
                self.start_counters[body["node"]] = self.mesh.agent(body["node"]).call("counters")
            if kind == "outage" and (body["from"], body["to"]) not in self.probes:
                self._probe(body["from"], body["to"], 0.2)

    def _probe(self, src, dst, interval):
        self.probes.setdefault((src, dst), Probe(self, src, dst, interval))

    def _later(self, t) -> None:
        def go():
            time.sleep(max(0.0, float(body.get("at", 0)) - self.now()))
            try:
                if "iperf" in t:
                    bps = F.iperf(self.mesh, body["from"], body["to"], float(body.get("seconds", 3)),
                                  port=int(body.get("port", 5202)), extra=_iperf_extra(body))
                    self.log.append("traffic", body["from"], None, type="iperf", to=body["to"],
                                    bits_per_second=bps)
                    self.record(f"traffic iperf {body['from']}->{body['to']}", bps is not None, mbit(bps))
                else:
                    r = self.mesh.exec(body["node"], body["run"], timeout=float(body.get("timeout", 60)))
                    self.log.append("traffic", body["node"], None, type="command", run=body["run"],
                                    returncode=r.returncode)
                    self.record(f"traffic command on {body['node']}", r.returncode == 0 or not body.get("check", True),
                                 f"exit {r.returncode}: {(r.stdout + r.stderr).strip()[-200:]}")
            except Exception as e:      # a traffic thread must report, not die silently
                self.record(f"traffic {t}", False, f"{type(e).__name__}: {e}")
        body = t.get("iperf") or t.get("command")
        th = threading.Thread(target=go, daemon=True, name=f"{next(iter(t))} {body.get('from', body.get('node'))}")
        th.start()
        self.threads.append(th)

    def _stop_traffic(self) -> None:
        for p in self.probes.values():
            p.stop.set()
        for p in self.probes.values():
            if p.is_alive():
                p.join(timeout=10)
        for th in self.threads:
            th.join(timeout=60)
        stuck = [th.name for th in self.threads + list(self.probes.values()) if th.is_alive()]
        if stuck:
            self.record("traffic", False, f"{len(stuck)} traffic thread(s) did not finish: {', '.join(stuck)}")
        self.threads = []

    # -- timeline steps --
    def _step(self, e: dict) -> None:
        if "fault" in e:
            self.progress(f"t={self.now():5.1f}s fault {e['fault']}")
            fault = F.apply_fault(self.mesh, e["fault"], check=bool(e.get("check", True)))
            self.names[e.get("name", fault.id)] = fault.id
            self.record(f"fault {fault.describe()}", True, fault.state.get("effect", "applied"))
        elif "heal" in e:
            target = e["heal"]
            fid = None if target in (None, "all") else self.names.get(target, target)
            self.progress(f"t={self.now():5.1f}s heal {target}")
            try:
                healed = F.heal(self.mesh, fid, check=bool(e.get("check", True)))
                msg = "; ".join(f.state.get("healed", "") for f in healed)
                self.record(f"heal {target}", True, msg or "nothing to heal")
            except F.FaultError as err:
                self.record(f"heal {target}", False, str(err))
        elif "action" in e:
            self._action(e["action"])
        elif "expect" in e:
            self._assert(e["expect"])

    def _action(self, action) -> None:
        self.progress(f"t={self.now():5.1f}s action {action}")
        if isinstance(action, dict) and "run" in action:
            r = self.mesh.exec(action["node"], action["run"], timeout=float(action.get("timeout", 60)))
            ok = r.returncode == 0 or not action.get("check", True)
            self.record(f"command on {action['node']}", ok, (r.stdout + r.stderr).strip()[-200:])
            return
        if isinstance(action, dict) and ("market_sell" in action or "market_buy" in action):
            self._market_action(action)
            return
        words = str(action).split()
        if words[0] == "reroute":
            changed = reroute(self.mesh)
            self.record("reroute", True, f"{changed} path entries changed")
        elif words[0] == "restart" and len(words) == 2:
            fault = F.apply_fault(self.mesh, f"restart {words[1]}")
            self.record(f"restart {words[1]}", True, fault.state.get("effect", ""))
        else:       # scenario_check refuses these before anything is built
            raise ScenarioError(f"unknown action {action!r} (reroute, restart NODE, {{node:, run:}})")

    def _market_action(self, action) -> None:
        """market_sell {node, lease, price (PKT), term} or market_buy {buyer, seller, token, wait (default 120 s)}:
        recorded as a check (a refused order fails it, with the market's reason)."""
        from testbed.market_view import MarketViewError
        from testbed.topology.leases import parse_term
        try:
            if "market_sell" in action:
                b = action["market_sell"]
                o = self.mesh.market_sell(b["node"], b["lease"], round(b["price"] * (1 << 30)), parse_term(b["term"]))
                self.record(f"market_sell {o['token']}", True, f"{o['link']} {o['kbps']} kbit/s until {o['end']}")
            else:
                b = action["market_buy"]
                done = self.mesh.market_buy(b["buyer"], b["seller"], b["token"], wait=float(b.get("wait", 120)))
                self.record(f"market_buy {b['token']}", done["outcome"] == "completed",
                            f"swap {done['outcome']}" + (", lease granted" if done.get("lease") else ""))
        except (MarketViewError, AssertionError) as e:          # TimedOut is an AssertionError
            self.record(f"market {next(iter(action))}", False, str(e))

    def record(self, name, ok, message, **details) -> None:
        check = Check(name, bool(ok), str(message), round(self.now(), 2))
        self.result.checks.append(check)
        if self.log:
            self.log.append("assertion", name=name, ok=check.ok, message=check.message, at=check.at, **details)
        self.progress(f"t={check.at:5.1f}s {'ok ' if ok else 'FAIL'} {name}: {message}")

    # -- assertions --
    def _assert(self, a: dict) -> None:
        kind = _assertion_kind(a)
        body = a[kind]
        within = float(a.get("within", 0))
        name = a.get("name") or f"{kind} " + " ".join(f"{k}={v}" for k, v in body.items())
        test = getattr(self, f"_a_{kind}")
        started = self.now()
        outcome = []

        def holds():
            outcome[:] = test(body)
            return outcome[0]
        wait_until(holds, within, interval=0.3)
        ok, msg, *details = outcome
        if within:
            msg += f" (after {self.now() - started:.1f}s, within {within:g}s)"
        self.record(name, ok, msg, **(details[0] if details else {}))

    def _pairs(self, body):
        srcs = body["from"] if isinstance(body["from"], list) else [body["from"]]
        dsts = body["to"] if isinstance(body["to"], list) else [body["to"]]
        return [(s, d) for s in srcs for d in dsts if s != d]

    def _a_reachable(self, body):
        res = self.mesh.reachability(self._pairs(body), count=1, timeout=1)
        bad = [f"{s}->{d}" for (s, d), ok in res.items() if not ok]
        return (not bad, f"unreachable: {', '.join(bad)}" if bad else f"{len(res)} pair(s) reachable",
                {"reach": _reach(res)})

    def _a_unreachable(self, body):
        res = self.mesh.reachability(self._pairs(body), count=1, timeout=1)
        bad = [f"{s}->{d}" for (s, d), ok in res.items() if ok]
        return (not bad, f"still reachable: {', '.join(bad)}" if bad else f"{len(res)} pair(s) unreachable",
                {"reach": _reach(res)})

    def _a_throughput(self, body):
        low = parse_rate(str(body["at_least"])) if "at_least" in body else 0
        high = parse_rate(str(body["at_most"])) if "at_most" in body else float("inf")
        bps = F.iperf(self.mesh, body["from"], body["to"], float(body.get("seconds", 2)),
                      port=int(body.get("port", 5201)), extra=_iperf_extra(body))
        bounds = ", ".join(f"{k.replace('_', ' ')} {body[k]}" for k in ("at_least", "at_most") if k in body)
        return bps is not None and low <= bps <= high, f"{mbit(bps)} ({bounds})"

    def _a_outage(self, body):
        probe = self.probes.get((body["from"], body["to"]))
        if probe is None or not probe.samples:
            return False, "no ping probe samples"
        worst = probe.longest_outage()
        fails = sum(1 for _, ok in probe.samples if not ok)
        at_most = float(body["at_most"])
        at_least = float(body.get("at_least", 0))
        return at_least <= worst <= at_most, (f"longest outage {worst:.1f}s (at most {at_most:g}s"
                                              + (f", at least {at_least:g}s" if at_least else "")
                                              + f"), {fails}/{len(probe.samples)} probes failed")

    def _a_path_changed(self, body):
        before = self.start_labels.get((body["from"], body["to"]))
        now = self._label(body["from"], body["to"])
        return before is not None and now is not None and now != before, f"label {before} -> {now}"

    def _label(self, src, dst):
        try:
            paths = self.mesh.agent(src).call("config", timeout=3)["config"]["paths"]
        except (OSError, AgentError, ValueError, KeyError):
            return None
        return (paths.get(self.mesh.ip6(dst)) or {}).get("label")

    def _a_counters(self, body):
        node, counter = body["node"], body.get("counter", "drops")
        now = self.mesh.agent(node).call("counters", timeout=3)
        before = self.start_counters.get(node, {})
        delta = _counter(now, counter) - _counter(before, counter)
        ok = delta >= float(body.get("at_least", float("-inf"))) and delta <= float(body.get("at_most", float("inf")))
        return ok, f"{node} {counter} +{delta:g}"

    def _a_agent_healthy(self, body):
        try:
            st = self.mesh.agent(body["node"]).call("status", timeout=1)
        except (OSError, AgentError, ValueError) as e:
            return False, f"no answer: {e}"
        ok = st.get("healthy") and st.get("ip6") == self.mesh.ip6(body["node"])
        return bool(ok), f"healthy={st.get('healthy')} ip6={st.get('ip6')}"

    # -- the PKT chain (testbed/chain_view.py) --
    def _chain_nodes(self, body) -> dict:
        nodes = self.mesh.chain()["nodes"]
        wanted = body.get("nodes") or list(nodes)
        return {n: nodes.get(n, {}) for n in ([wanted] if isinstance(wanted, str) else wanted)}

    def _a_chain_height(self, body):
        heights = {n: st.get("height", -1) for n, st in self._chain_nodes(body).items()}
        low = int(body["at_least"])
        return bool(heights) and min(heights.values()) >= low, \
            f"heights {', '.join(f'{n} {h}' for n, h in heights.items())} (at least {low})"

    def _a_chains_agree(self, body):
        nodes = self._chain_nodes(body)
        heights = {n: st.get("height", -1) for n, st in nodes.items()}
        tips = {st.get("tip") for st in nodes.values()}
        spread = max(heights.values(), default=0) - min(heights.values(), default=0)
        within_blocks = int(body.get("within_blocks", 0))
        ok = bool(nodes) and (len(tips) == 1 if within_blocks == 0 else spread <= within_blocks)
        return ok, (f"{len(tips)} tip(s), heights {', '.join(f'{n} {h}' for n, h in heights.items())} "
                    f"(within {within_blocks} blocks)")

    def _a_reorg(self, body):
        nodes = self._chain_nodes({"nodes": body.get("node")} if body.get("node") else {})
        counts = {n: st.get("reorgs", 0) for n, st in nodes.items()}
        low = int(body.get("at_least", 1))
        return sum(counts.values()) >= low, (f"reorgs {', '.join(f'{n} {c}' for n, c in counts.items())} "
                                             f"(at least {low})")

    def _a_balance(self, body):
        from testbed.chain_view import ChainViewError
        try:
            w = self.mesh.wallet(body["node"])
        except ChainViewError as e:
            return False, str(e)
        pkt = w["balance"]["spendable"] / (1 << 30)
        return pkt >= float(body["at_least"]), f"{body['node']} spendable {pkt:.4f} PKT (at least {body['at_least']})"

    # -- the bandwidth market (testbed/market_view.py) --
    def _a_swap(self, body):
        from testbed.market_view import MarketViewError
        try:
            swaps = [s for s in self.mesh.market_status(body["buyer"])["swaps"]
                     if s["role"] == "buyer" and s["token"] == body["token"]]
        except MarketViewError as e:
            return False, str(e)
        got = swaps[-1]["outcome"] if swaps else None
        return got == body["outcome"], f"{body['buyer']}'s swap of {body['token']}: {got or 'none'} " \
                                       f"(expected {body['outcome']})"

    def _a_contended_throughput(self, body):
        from testbed.labs.checking import flood
        low = parse_rate(str(body["at_least"])) if "at_least" in body else 0
        high = parse_rate(str(body["at_most"])) if "at_most" in body else float("inf")
        got = flood(self.mesh, [body["from"], body["against"]], body["to"])
        bps = got[body["from"]] * 1000
        bounds = ", ".join(f"{k.replace('_', ' ')} {body[k]}" for k in ("at_least", "at_most") if k in body)
        return low <= bps <= high, f"{mbit(bps)} beside {body['against']}'s {mbit(got[body['against']] * 1000)} " \
                                   f"({bounds})"

    def _a_lease_active(self, body):
        from testbed.market_view import MarketViewError, lease_ends
        holder = self.mesh.identity(body["holder"]).pubkey_text
        try:
            ends = lease_ends(self.mesh.topo, body["lease"])
        except MarketViewError as e:
            return False, str(e)
        states = {}
        for n in ends:
            found = [l for link in self.mesh.agent(n).call("leases")["links"].values() for l in link["leases"]
                     if l["id"] == body["lease"]]
            states[n] = ("has no such lease" if not found else "expired" if found[0]["expired"]
                         else "held by the holder" if found[0]["holder"] == holder else "held by another key")
        ok = all(v == "held by the holder" for v in states.values())
        return ok, f"lease {body['lease']} for {body['holder']}: " + ", ".join(f"{n} {v}" for n, v in states.items())


def _reach(res: dict) -> dict:
    """What a reachability check saw, pair by pair, for the event log (the report's reachability plot)."""
    return {f"{s} -> {d}": ok for (s, d), ok in res.items()}


def _iperf_extra(body) -> list[str]:
    """iperf `mss: 1200`: TCP segments of at most this size (a paced link's queue holds whole TUN packets);
    `parallel: 8`: that many TCP connections at once (the throughput is their sum). Both are checked with the
    scenario (scenario_check.py)."""
    extra = []
    if body.get("mss"):
        extra += ["-M", str(body["mss"])]
    if body.get("parallel"):
        extra += ["-P", str(body["parallel"])]
    return extra


def _counter(c: dict, name: str) -> float:
    if name == "drops":       # every drop the node counted: node reasons, per interface, switch
        total = sum(v for v in (c.get("drops") or {}).values() if isinstance(v, int))
        for i in (c.get("interfaces") or {}).values():
            total += sum(v for v in (i.get("drops") or {}).values() if isinstance(v, int))
        return total + sum(v for k, v in (c.get("switch") or {}).items() if "drop" in k and isinstance(v, int))
    v = c
    for part in name.split("."):
        v = v.get(part, 0) if isinstance(v, dict) else 0
    return v if isinstance(v, (int, float)) else 0


def reroute(mesh) -> int:
    """Recompute every node's static path table around links that are down (link-down and partition faults) and
    push it through set_paths: what route servers do by themselves on meshes that have them."""
    from node.cjdns.paths import path_entry, static_paths
    down = set()
    for f in F.active_faults(mesh):
        if isinstance(f, (F.LinkDown, F.Partition)):
            for rec in mesh.run.state["links"]:
                i = mesh.run.state["links"].index(rec)
                if f.downs(mesh, end_of(rec, i, rec["a"])):
                    down.add(frozenset((rec["a"], rec["b"])))
    index = {}
    for n in mesh.topo.nodes:
        for p in mesh.agent(n).call("peers", timeout=3)["peers"]:
            index[(n, p["ifname"])] = p["switch_index"]
    # neighbours in link order, as the mesh built the first tables, so equal-length paths break ties alike
    adjacency = {n: {} for n in mesh.topo.nodes}
    for rec in mesh.run.state["links"]:
        if frozenset((rec["a"], rec["b"])) in down:
            continue
        adjacency[rec["a"]][rec["b"]] = index[(rec["a"], rec["a_if"])]
        adjacency[rec["b"]][rec["a"]] = index[(rec["b"], rec["b_if"])]
    changed = 0
    for n in mesh.topo.nodes:
        old = mesh.agent(n).call("config", timeout=3)["config"]["paths"]
        table = {mesh.ip6(d): path_entry(mesh.identity(d).public_key, label, via)
                 for d, (label, via) in static_paths(adjacency, n).items()}
        changed += sum(1 for ip, e in table.items() if old.get(ip) != e)
        changed += sum(1 for ip in old if ip not in table)      # destinations no longer reachable
        mesh.agent(n).call("set_paths", paths=table, timeout=3)
    return changed


def bundled() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.yaml"))


# -- command line: `pktlab run SCENARIO` ------------------------------------------------------------------

def run_with_progress(ref, seed=None, keep=False, console=None, mesh_options=None) -> Result:
    """Run a scenario with a live status line (rich) and print the pass/fail table."""
    from testbed.console import make_console
    console = console or make_console(stderr=True)
    status = console.status("starting")

    def progress(text):
        status.update(text)
        if text.startswith("t="):
            console.log(text)
    with status:
        result = Runner(ref, seed=seed, progress=progress, keep=keep, mesh_options=mesh_options).run()
    print_result(result, console)
    return result


def print_result(result: Result, console) -> None:
    from testbed.console import data_table, styled
    t = data_table(title=f"scenario {result.name} (seed {result.seed}): {result.status.upper()}")
    t.add_column("t (s)", justify="right")
    for col in ("check", "result", "measured"):
        t.add_column(col, overflow="fold")
    for c in result.checks:
        t.add_row(f"{c.at:.1f}", c.name, styled(("pass", "green")) if c.ok else styled(("FAIL", "red")), c.message)
    console.print(t)
    if result.reason:
        console.print(f"{result.status}: {result.reason}")
