"""Render a run directory into plots and an HTML summary: ``render_report(run_dir, out_dir)``.

Input: ``run_dir/events.jsonl`` (testbed/events.py) and, if present, ``run_dir/counters.jsonl`` (the same
format, for runs that keep counter samples apart). Output in ``out_dir``:

* ``throughput.png``   transmit rate per link (Mbit/s) over time, from deltas of consecutive ``tx_bytes``
                       samples; a counter that goes backwards (agent restart) starts a new series
* ``reachability.png`` per (src, dst) pair: green while pings/reachability assertions succeed, red while not
* ``faults.png``       one bar per fault from its ``fault`` event to its ``heal`` (or the end of the run), with
                       agent restarts, route changes and link up/down marked
* ``chain.png``        for runs with a PKT chain (testbed/services.py): the interval before each block found (by
                       height), accepted announcements per second per miner over time (from ``miner_stats``), and
                       announcement bytes per link (each miner's uploads on its fewest-hop path to its nearest pool)
* ``index.html``       the plots, a table of faults and a table of assertions

Times are seconds since the run start (the ``run_start`` event, else the first event).
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed import events as ev  # noqa: E402

MAX_SERIES = 12          # links / pairs drawn; the rest are summarised in the legend text
PLOTS = ("throughput.png", "reachability.png", "faults.png")
PLOT_TITLES = ("Throughput per link", "Reachability over time", "Fault timeline")
TOPOLOGY_PNG = "topology.png"


class ReportError(ValueError):
    """The run directory has no readable event log."""


# -- data ------------------------------------------------------------------------------------------------

@dataclass
class Fault:
    start: float
    end: float | None         # None: never healed
    type: str
    target: str
    id: str | None
    details: dict


def load_run(run_dir) -> tuple[list, list]:
    """(events sorted by time, bad lines as (file, line, reason))."""
    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, ev.FILENAME)
    if not os.path.isfile(path):
        raise ReportError(f"no {ev.FILENAME} in {run_dir}")
    events, bad = [], []
    for name in (ev.FILENAME, "counters.jsonl"):
        p = os.path.join(run_dir, name)
        if os.path.isfile(p):
            errors = []
            events.extend(ev.iter_events(p, errors))
            bad.extend((name, n, reason) for n, reason in errors)
    events.sort(key=lambda e: e["ts"])
    return events, bad


def run_start(events) -> float:
    starts = [e["ts"] for e in events if e["kind"] == ev.RUN_START]
    if starts:
        return min(starts)
    return events[0]["ts"] if events else 0.0


def run_end(events) -> float:
    ends = [e["ts"] for e in events if e["kind"] == ev.RUN_END]
    if ends:
        return max(ends)
    return events[-1]["ts"] if events else 0.0


def link_throughput(events) -> dict:
    """{"node:link": [(t, bits/s), ...]} from consecutive per-link ``tx_bytes`` samples (sorted by time).
    A sample whose counter is lower than the previous one (agent restart) only restarts the series."""
    last, out = {}, {}
    for e in events:
        if e["kind"] != ev.COUNTERS or e["link"] is None:
            continue
        tx = e["details"].get("tx_bytes")
        if not isinstance(tx, (int, float)) or isinstance(tx, bool):
            continue
        key = f"{e['node']}:{e['link']}"
        prev = last.get(key)
        last[key] = (e["ts"], tx)
        if prev is None or e["ts"] <= prev[0] or tx < prev[1]:
            continue
        out.setdefault(key, []).append((e["ts"], 8.0 * (tx - prev[1]) / (e["ts"] - prev[0])))
    return out


def reachability(events) -> dict:
    """{"src -> dst": [(t, ok), ...]} from ``ping`` events and from assertions: those that name a src and dst,
    and reachable/unreachable checks with what they saw pair by pair (``reach``: {"a -> b": reached})."""
    out = {}
    for e in events:
        d = e["details"]
        if e["kind"] == ev.PING and "reachable" in d:
            seen = {f"{d.get('src') or e['node'] or '?'} -> {d.get('dst', '?')}": bool(d["reachable"])}
        elif e["kind"] == ev.ASSERTION and isinstance(d.get("reach"), dict):
            seen = {str(pair): bool(ok) for pair, ok in d["reach"].items()}
        elif e["kind"] == ev.ASSERTION and "ok" in d and "src" in d and "dst" in d:
            seen = {f"{d['src']} -> {d['dst']}": bool(d["ok"])}
        else:
            continue
        for pair, ok in seen.items():
            out.setdefault(pair, []).append((e["ts"], ok))
    return out


def assertion_marks(events) -> dict:
    """{"src -> dst": [(t, reached)]}: the instants assertions looked at a pair (drawn over the probe bars)."""
    out = {}
    for e in events:
        if e["kind"] == ev.ASSERTION and isinstance(e["details"].get("reach"), dict):
            for pair, ok in e["details"]["reach"].items():
                out.setdefault(str(pair), []).append((e["ts"], bool(ok)))
    return out


def faults(events) -> list[Fault]:
    """Faults paired with their heals: by ``id``, else by (type, node, link); a heal without either heals all
    faults still open."""
    open_, done = [], []
    for e in events:
        d = e["details"]
        if e["kind"] == ev.FAULT:
            target = " ".join(x for x in (e["node"], e["link"], d.get("target")) if x) or "-"
            open_.append(Fault(e["ts"], None, str(d.get("type", "?")), target, d.get("id"), d))
        elif e["kind"] == ev.HEAL:
            if d.get("id") is not None:
                match = [f for f in open_ if f.id == d["id"]]
            elif e["node"] or e["link"] or d.get("type"):
                match = [f for f in open_ if (not d.get("type") or f.type == d["type"])
                         and (not e["node"] or e["node"] in f.target.split())
                         and (not e["link"] or e["link"] in f.target.split())]
            else:
                match = list(open_)
            for f in match:
                f.end = e["ts"]
                open_.remove(f)
                done.append(f)
    return sorted(done + open_, key=lambda f: f.start)


def link_totals(events) -> dict:
    """{"node:link": last per-link counter sample's details} (totals since the agent started)."""
    out = {}
    for e in events:
        if e["kind"] == ev.COUNTERS and e["link"] is not None:
            out[f"{e['node']}:{e['link']}"] = e["details"]
    return out


def assertions(events) -> list[dict]:
    return [e for e in events if e["kind"] == ev.ASSERTION]


# -- plots -------------------------------------------------------------------------------------------------

def _figure(title, ylabel):
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.set_title(title)
    ax.set_xlabel("time since run start (s)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _shade_faults(ax, fault_list, t0, t_end):
    for f in fault_list:
        ax.axvspan(f.start - t0, (f.end if f.end is not None else t_end) - t0, color="red", alpha=0.08, zorder=0)


def plot_throughput(series, fault_list, t0, t_end, path):
    fig, ax = _figure("Throughput per link (transmit)", "Mbit/s")
    ranked = sorted(series, key=lambda k: -sum(r for _, r in series[k]))
    for key in ranked[:MAX_SERIES]:
        pts = series[key]
        ax.plot([t - t0 for t, _ in pts], [r / 1e6 for _, r in pts], label=key, linewidth=1.2)
    if not series:
        ax.text(0.5, 0.5, "no counter samples", transform=ax.transAxes, ha="center")
    elif len(ranked) > MAX_SERIES:
        ax.plot([], [], " ", label=f"+{len(ranked) - MAX_SERIES} quieter links")
    _shade_faults(ax, fault_list, t0, t_end)
    ax.set_xlim(0, max(t_end - t0, 1e-3))
    if series:
        ax.legend(fontsize="small", loc="upper right")
    _save(fig, path)


def plot_reachability(series, fault_list, t0, t_end, path, marks=None):
    """A bar per pair, green while reached and red while not; diamonds where an assertion checked the pair."""
    keys = sorted(series)[:MAX_SERIES]
    fig, ax = _figure("Reachability over time (bars: probes and checks; diamonds: assertions)", "")
    for row, key in enumerate(keys):
        pts = series[key]
        for i, (t, ok) in enumerate(pts):
            nxt = pts[i + 1][0] if i + 1 < len(pts) else t_end
            ax.broken_barh([(t - t0, max(nxt - t, 1e-3))], (row - 0.35, 0.7),
                           facecolors="tab:green" if ok else "tab:red")
        for t, ok in (marks or {}).get(key, []):
            ax.plot(t - t0, row, marker="D", markersize=7, markeredgecolor="black", linestyle="",
                    color="tab:green" if ok else "tab:red", zorder=3)
    if not keys:
        ax.text(0.5, 0.5, "no ping or reachability events", transform=ax.transAxes, ha="center")
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels(keys, fontsize="small")
    if len(series) > MAX_SERIES:
        ax.set_ylabel(f"first {MAX_SERIES} of {len(series)} pairs")
    _shade_faults(ax, fault_list, t0, t_end)
    ax.set_xlim(0, max(t_end - t0, 1e-3))
    _save(fig, path)


MARKS = {ev.AGENT_RESTART: ("tab:purple", "agent restart"), ev.ROUTE_CHANGE: ("tab:blue", "route change"),
         ev.DOWN: ("tab:red", "down"), ev.UP: ("tab:green", "up")}


def plot_faults(fault_list, events, t0, t_end, path):
    fig, ax = _figure("Fault timeline", "")
    for row, f in enumerate(fault_list):
        end = f.end if f.end is not None else t_end
        ax.broken_barh([(f.start - t0, max(end - f.start, 1e-3))], (row - 0.35, 0.7),
                       facecolors="tab:orange" if f.end is not None else "tab:red")
    ax.set_yticks(range(len(fault_list)))
    ax.set_yticklabels([f"{f.type} {f.target}" for f in fault_list], fontsize="small")
    if fault_list:
        ax.broken_barh([], (0, 0), facecolors="tab:orange", label="fault until heal")
        ax.broken_barh([], (0, 0), facecolors="tab:red", label="fault never healed")
    for kind, (color, label) in MARKS.items():
        times = [e["ts"] - t0 for e in events if e["kind"] == kind]
        for i, t in enumerate(times):
            ax.axvline(t, color=color, linestyle="--", linewidth=0.8, label=label if i == 0 else None)
    if not fault_list:
        ax.text(0.5, 0.5, "no faults", transform=ax.transAxes, ha="center")
    ax.set_xlim(0, max(t_end - t0, 1e-3))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="upper right")
    _save(fig, path)


CHAIN_PLOT = "chain.png"


def block_intervals(events) -> list[tuple[int, float]]:
    """(height, seconds since the block before) of each block a pool found, in the order found."""
    found = sorted((e["ts"], e["details"]["height"]) for e in events if e["kind"] == "block_found")
    return [(h, t - prev) for (prev, _), (t, h) in zip(found, found[1:])]


def ann_rates(events) -> dict:
    """{miner node: [(ts, accepted announcements per second)]} from consecutive miner_stats events."""
    last, out = {}, {}
    for e in events:
        if e["kind"] != "miner_stats":
            continue
        node, acc = e["node"], e["details"].get("accepted", 0)
        if node in last and e["ts"] > last[node][0] and acc >= last[node][1]:
            out.setdefault(node, []).append((e["ts"], (acc - last[node][1]) / (e["ts"] - last[node][0])))
        last[node] = (e["ts"], acc)
    return out


def ann_bytes_per_link(events, run_dir) -> dict:
    """{link: bytes} of the miners' last reported uploads along their fewest-hop paths to their nearest pool."""
    path = os.path.join(run_dir, "topology.yaml")
    sent = {}
    for e in events:
        if e["kind"] == "miner_stats":
            sent[e["node"]] = e["details"].get("bytes_sent", 0)
    if not sent or not os.path.exists(path):
        return {}
    import networkx as nx

    from testbed.services import nearest
    from testbed.topology import load
    topo = load(path)
    g, pools = topo.graph(), topo.nodes_with_role("pool")
    out = {}
    for node, n in sent.items():
        near = nearest(g, node, pools) if node in g else None
        if near is None:
            continue
        hops = nx.shortest_path(g, node, near)
        for a, b in zip(hops, hops[1:]):
            name = topo.find_link(a, b).name
            out[name] = out.get(name, 0) + n
    return out


def plot_chain(intervals, rates, link_bytes, t0, path):
    fig, axes = plt.subplots(3, 1, figsize=(10, 9))
    ax = axes[0]
    if intervals:
        ax.bar([h for h, _ in intervals], [d for _, d in intervals], color="tab:blue")
    ax.set_title("Block intervals (s before each block found)")
    ax.set_xlabel("height")
    ax = axes[1]
    for node, pts in sorted(rates.items())[:MAX_SERIES]:
        ax.plot([t - t0 for t, _ in pts], [r for _, r in pts], label=node)
    ax.set_title("Accepted announcements per second per miner")
    ax.set_xlabel("seconds since the run start")
    if rates:
        ax.legend(fontsize="small", loc="upper right")
    ax = axes[2]
    links = sorted(link_bytes)
    ax.barh(links, [link_bytes[k] / 1e6 for k in links], color="tab:green")
    ax.set_title("Announcement traffic per link (MB uploaded by miners)")
    fig.tight_layout()
    _save(fig, path)


# -- HTML --------------------------------------------------------------------------------------------------

def _table(headers, rows) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>none</p>"


def _details_text(d, skip=()) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items() if k not in skip)


def run_facts(run_dir, events) -> dict:
    """What the run was: its name, topology (source, name, size) and scenario (name, status), as far as the run
    directory and the event log tell."""
    import json
    facts = {"run": os.path.basename(os.path.abspath(run_dir)), "source": None, "topology": None, "nodes": None,
             "links": None, "seed": None, "scenario": None, "status": None}
    try:
        with open(os.path.join(run_dir, "state.json")) as f:
            state = json.load(f)
        facts.update(run=state.get("name") or facts["run"], source=state.get("source"), seed=state.get("seed"))
    except (OSError, ValueError):
        pass
    for e in events:
        if e["kind"] == ev.UP:
            facts.update(nodes=e["details"].get("nodes"), links=e["details"].get("links"),
                         source=facts["source"] or e["details"].get("source"))
        elif e["kind"] == ev.RUN_START:
            facts["scenario"] = e["details"].get("scenario")
        elif e["kind"] == ev.RUN_END:
            facts["status"] = e["details"].get("status")
    topo = _topology(run_dir)
    if topo is not None:
        facts.update(topology=topo.name, nodes=len(topo.nodes), links=len(topo.links))
    return facts


def _topology(run_dir):
    from testbed.topology import TopologyError, load
    path = os.path.join(run_dir, "topology.yaml")
    try:
        return load(path, allow_disconnected=True) if os.path.isfile(path) else None
    except TopologyError:
        return None


def render_html(run_dir, events, fault_list, bad, t0, t_end, facts=None, topology_png=None) -> str:
    asserts = assertions(events)
    passed = sum(1 for a in asserts if a["details"].get("ok"))
    fault_rows = [(f"{f.start - t0:.2f}", f"{f.end - t0:.2f}" if f.end is not None else "not healed",
                   f"{(f.end - f.start):.2f}" if f.end is not None else "-", f.type, f.target, f.id or "",
                   _details_text(f.details, ("type", "id", "target"))) for f in fault_list]
    assert_rows = [(f"{a['ts'] - t0:.2f}", a["details"].get("name", ""),
                    "PASS" if a["details"].get("ok") else "FAIL", a["node"] or "",
                    a["details"].get("message", ""), _details_text(a["details"], ("name", "ok", "message")))
                   for a in asserts]
    kinds = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    esc = html.escape
    facts = facts or run_facts(run_dir, events)
    what = f"scenario {facts['scenario']}" + (f" ({facts['status']})" if facts["status"] else "") \
        if facts["scenario"] else "no scenario"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>pktlab run {esc(str(facts['run']))}: {esc(what)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}th{background:#eee}"
        ".fail{color:#b00}img{max-width:100%}</style></head><body>",
        f"<h1>pktlab run {esc(str(facts['run']))}: {esc(what)}</h1>",
        "<p>" + esc(f"topology {facts['topology'] or '?'} from {facts['source'] or '?'}, {facts['nodes']} nodes, "
                    f"{facts['links']} links, seed {facts['seed']}; run directory {os.path.abspath(run_dir)}")
        + "</p>",
        f"<p>duration {t_end - t0:.1f} s, {len(events)} events "
        f"({esc(', '.join(f'{k} {n}' for k, n in sorted(kinds.items())))}); "
        f"assertions: {passed} passed, {len(asserts) - passed} failed; faults: {len(fault_list)}</p>",
    ]
    if bad:
        parts.append(f"<p class='fail'>{len(bad)} unreadable event log lines skipped</p>")
    if topology_png:
        parts.append(f"<h2>Topology</h2><img src='{topology_png}' alt='topology'>")
    for png, title in zip(PLOTS, PLOT_TITLES):
        parts.append(f"<h2>{title}</h2><img src='{png}' alt='{title}'>")
    if any(e["kind"] in ("block_found", "miner_stats") for e in events):
        parts.append(f"<h2>PKT chain and mining</h2><img src='{CHAIN_PLOT}' alt='chain'>")
    parts.append("<h2>Faults applied</h2>" + _table(
        ["start (s)", "healed (s)", "duration (s)", "type", "target", "id", "details"], fault_rows))
    parts.append("<h2>Assertions</h2>" + _table(
        ["time (s)", "name", "result", "node", "message", "details"], assert_rows))
    link_rows = []
    for key, c in sorted(link_totals(events).items()):
        drops = c.get("drops") if isinstance(c.get("drops"), dict) else {}
        link_rows.append((key, c.get("tx_packets", ""), c.get("tx_bytes", ""), c.get("rx_packets", ""),
                          c.get("rx_bytes", ""), _details_text(drops) or "-"))
    parts.append("<h2>Links (last counter sample)</h2>" + _table(
        ["link", "tx packets", "tx bytes", "rx packets", "rx bytes", "drops"], link_rows))
    parts.append("</body></html>")
    return "\n".join(parts)


def render_report(run_dir, out_dir) -> dict:
    """Write the plots and index.html; returns {"index": path, "plots": [paths], "events": n, ...}."""
    events, bad = load_run(run_dir)
    os.makedirs(out_dir, exist_ok=True)
    t0, t_end = run_start(events), run_end(events)
    fault_list = faults(events)
    paths = [os.path.join(out_dir, p) for p in PLOTS]
    plot_throughput(link_throughput(events), fault_list, t0, t_end, paths[0])
    plot_reachability(reachability(events), fault_list, t0, t_end, paths[1], assertion_marks(events))
    plot_faults(fault_list, events, t0, t_end, paths[2])
    topo = _topology(run_dir)
    if topo is not None:
        from testbed.topology.formats import draw_png
        draw_png(topo, os.path.join(out_dir, TOPOLOGY_PNG))
        paths.append(os.path.join(out_dir, TOPOLOGY_PNG))
    if any(e["kind"] in ("block_found", "miner_stats") for e in events):
        paths.append(os.path.join(out_dir, CHAIN_PLOT))
        plot_chain(block_intervals(events), ann_rates(events), ann_bytes_per_link(events, run_dir), t0, paths[-1])
    index = os.path.join(out_dir, "index.html")
    with open(index, "w") as f:
        f.write(render_html(run_dir, events, fault_list, bad, t0, t_end,
                            topology_png=TOPOLOGY_PNG if topo is not None else None))
    return {"index": index, "plots": paths, "events": len(events), "faults": len(fault_list),
            "assertions": len(assertions(events)), "bad_lines": len(bad)}
