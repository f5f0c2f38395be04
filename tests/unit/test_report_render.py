"""testbed.report: a synthetic run directory rendered into PNG plots and an HTML summary; the derived series
(throughput from counter deltas, reachability, fault/heal pairing) checked against the run that was written."""
import html
import os

import matplotlib.image as mpimg
import pytest

from testbed import events as ev
from testbed import report as R

T0 = 1_700_000_000.0
RATE = 125_000          # bytes/s on a-eth0 = 1 Mbit/s


def synthetic_run(run_dir):
    """20 s: a-eth0 sends 1 Mbit/s except while fault f1 (link_down a-b, 5..10 s) is active; agent b restarts at
    12 s (its counters start again from 0); a pings b every second; two assertions."""
    log = ev.EventLog(run_dir)
    log.append(ev.RUN_START, ts=T0, scenario="synthetic")
    tx_a, tx_b = 0, 0
    for s in range(21):
        t = T0 + s
        if s == 5:
            log.append(ev.FAULT, link="a-b", ts=t, type="link_down", id="f1")
        if s == 10:
            log.append(ev.HEAL, link="a-b", ts=t, id="f1")
        if s == 12:
            log.append(ev.AGENT_RESTART, node="b", ts=t)
            tx_b = 0
        if s > 0:
            tx_a += 0 if 5 < s <= 10 else RATE
            tx_b += RATE // 2
        log.append(ev.COUNTERS, node="a", link="eth0", ts=t, tx_bytes=tx_a, rx_bytes=0)
        log.append(ev.COUNTERS, node="b", link="eth0", ts=t, tx_bytes=tx_b, rx_bytes=0)
        log.append(ev.COUNTERS, node="a", ts=t, tun={"tun_rx_packets": s})       # per-node: not a link
        log.append(ev.PING, node="a", ts=t + 0.5, src="a", dst="b", reachable=not 5 <= s < 10, rtt_ms=1.0)
    log.append(ev.FAULT, node="c", ts=T0 + 15, type="crash", id="f2")           # never healed
    log.append(ev.ASSERTION, ts=T0 + 9, name="reachable a b within 3s", ok=False, src="a", dst="b",
               message="no answer <script>alert(1)</script>")
    log.append(ev.ASSERTION, ts=T0 + 19, name="throughput a-b >= 0.9 Mbit/s", ok=True, message="1.0 Mbit/s")
    log.append(ev.RUN_END, ts=T0 + 20)
    log.close()


def test_throughput_from_counter_deltas(tmp_path):
    synthetic_run(tmp_path)
    events, bad = R.load_run(tmp_path)
    assert bad == []
    tp = R.link_throughput(events)
    assert set(tp) == {"a:eth0", "b:eth0"}
    a = dict((round(t - T0), r) for t, r in tp["a:eth0"])
    assert len(a) == 20
    assert a[1] == pytest.approx(1e6) and a[20] == pytest.approx(1e6)
    assert all(a[s] == 0 for s in range(6, 11))           # nothing sent while the link was down
    b = [round(t - T0) for t, _ in tp["b:eth0"]]
    assert 12 not in b and len(b) == 19                   # the restart sample only restarts the series
    assert all(r == pytest.approx(0.5e6) for _, r in tp["b:eth0"])


def test_reachability_and_faults(tmp_path):
    synthetic_run(tmp_path)
    events, _ = R.load_run(tmp_path)
    reach = R.reachability(events)
    pts = reach["a -> b"]
    assert len(pts) == 22                              # 21 pings and the assertion naming src/dst
    failed = sorted(round(t - T0, 1) for t, ok in pts if not ok)
    assert failed == [5.5, 6.5, 7.5, 8.5, 9.0, 9.5]
    fl = R.faults(events)
    assert [(f.type, f.target, f.start - T0, f.end and f.end - T0) for f in fl] == [
        ("link_down", "a-b", 5.0, 10.0), ("crash", "c", 15.0, None)]
    assert (R.run_start(events), R.run_end(events)) == (T0, T0 + 20)


def test_heal_pairing_without_ids():
    e = lambda ts, kind, **kw: {"ts": ts, "kind": kind, "node": kw.pop("node", None),  # noqa: E731
                                "link": kw.pop("link", None), "details": kw}
    events = [e(1, "fault", link="a-b", type="loss"), e(2, "fault", link="b-c", type="delay"),
              e(3, "fault", node="d", type="pause"), e(4, "heal", link="b-c"), e(5, "heal")]
    fl = R.faults(events)
    assert [(f.type, f.end) for f in fl] == [("loss", 5), ("delay", 4), ("pause", 5)]


def test_render_report_writes_pngs_and_html(tmp_path):
    run, out = tmp_path / "run", tmp_path / "report"
    run.mkdir()
    synthetic_run(run)
    result = R.render_report(run, out)
    assert result["events"] == 21 * 4 + 8 and result["faults"] == 2 and result["assertions"] == 2
    for name in R.PLOTS:
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(str(path))
        assert img.shape[0] > 200 and img.shape[1] > 400
        assert img[..., :3].std() > 0.01                 # something was drawn, not a blank canvas
    page = (out / "index.html").read_text()
    for name in R.PLOTS:
        assert f"src='{name}'" in page
    assert "<td>link_down</td><td>a-b</td><td>f1</td>" in page
    assert "<td>crash</td><td>c</td>" in page and "not healed" in page
    assert "<td>FAIL</td>" in page and "<td>PASS</td>" in page
    assert "<script>" not in page and html.escape("<script>") in page
    assert "1 passed, 1 failed" in page
    assert f"<td>a:eth0</td><td></td><td>{15 * RATE}</td>" in page          # 15 of 20 seconds sending


def test_report_of_a_run_without_samples(tmp_path):
    ev.EventLog(tmp_path).append(ev.RUN_START, ts=T0)
    with open(tmp_path / "events.jsonl", "ab") as f:
        f.write(b"garbage line\n")
    out = tmp_path / "r"
    result = R.render_report(tmp_path, out)
    assert result["bad_lines"] == 1 and result["faults"] == 0
    assert all(os.path.getsize(p) > 0 for p in result["plots"])
    assert "unreadable event log lines skipped" in (out / "index.html").read_text()


def test_counters_file_is_merged(tmp_path):
    ev.EventLog(tmp_path).append(ev.RUN_START, ts=T0)
    c = ev.EventLog(tmp_path / "counters.jsonl")
    c.append(ev.COUNTERS, node="a", link="eth0", ts=T0 + 1, tx_bytes=0)
    c.append(ev.COUNTERS, node="a", link="eth0", ts=T0 + 3, tx_bytes=500_000)
    events, _ = R.load_run(tmp_path)
    assert R.link_throughput(events) == {"a:eth0": [(T0 + 3, 2e6)]}


def test_missing_event_log_is_a_clear_error(tmp_path):
    with pytest.raises(R.ReportError, match="no events.jsonl"):
        R.render_report(tmp_path, tmp_path / "out")


def test_report_names_the_run_topology_and_scenario_and_heads_each_section_once(tmp_path):
    """Issue 15 item 10: the page says what ran (run, topology, scenario and its result), draws the topology,
    and no heading repeats (there were two "Faults")."""
    import json
    from testbed.topology import load, save
    run = tmp_path / "run"
    run.mkdir()
    synthetic_run(run)
    (run / "state.json").write_text(json.dumps({"name": "tri-2", "source": "triangle", "seed": 7}))
    save(load("triangle"), run / "topology.yaml")
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps({"ts": T0 + 20, "kind": "run_end", "node": None, "link": None,
                            "details": {"status": "failed"}}) + "\n")
    result = R.render_report(run, tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<h1>pktlab run tri-2: scenario synthetic (failed)</h1>" in page
    assert "topology triangle from triangle, 3 nodes, 3 links, seed 7" in page
    headings = [h.split("</h2>")[0] for h in page.split("<h2>")[1:]]
    assert len(headings) == len(set(headings)) and "Topology" in headings and "Faults applied" in headings
    assert (tmp_path / "out" / "topology.png").read_bytes()[:4] == b"\x89PNG"
    assert str(tmp_path / "out" / "topology.png") in result["plots"]


def test_reachability_plot_reflects_assertions(tmp_path):
    """An assertion's pair-by-pair outcome (`reach`, written by the scenario runner) is a reachability sample
    and a mark of its own, so a pair no probe watched still shows."""
    log = ev.EventLog(tmp_path)
    log.append(ev.RUN_START, ts=T0)
    log.append(ev.ASSERTION, ts=T0 + 2, name="unreachable", ok=True, reach={"n1 -> n3": False, "n2 -> n3": False})
    log.append(ev.ASSERTION, ts=T0 + 6, name="reachable", ok=True, reach={"n1 -> n3": True})
    log.append(ev.RUN_END, ts=T0 + 8)
    log.close()
    events, _ = R.load_run(tmp_path)
    assert R.reachability(events) == {"n1 -> n3": [(T0 + 2, False), (T0 + 6, True)], "n2 -> n3": [(T0 + 2, False)]}
    assert R.assertion_marks(events)["n1 -> n3"] == [(T0 + 2, False), (T0 + 6, True)]
    R.render_report(tmp_path, tmp_path / "out")
    img = mpimg.imread(str(tmp_path / "out" / "reachability.png"))
    assert img[..., :3].std() > 0.01


def test_chain_plot_from_block_and_miner_events(tmp_path):
    from testbed.events import EventLog
    from testbed.topology import from_dict, save
    save(from_dict({"nodes": {"p": {"roles": ["pool"]}, "r": {}, "m": {"roles": ["miner"]}},
                    "links": ["p--r", "r--m"]}), tmp_path / "topology.yaml")
    log = EventLog(tmp_path / "events.jsonl")
    log.append("up", ts=100.0)
    for i, t in enumerate((110.0, 113.0, 121.0), 1):
        log.append("block_found", node="p", ts=t, height=i, hash="00" * 32)
    for t, acc, sent in ((105.0, 0, 0), (110.0, 50, 51200), (115.0, 80, 81920)):
        log.append("miner_stats", node="m", ts=t, accepted=acc, bytes_sent=sent)
    log.close()
    events, _ = R.load_run(tmp_path)
    assert R.block_intervals(events) == [(2, 3.0), (3, 8.0)]
    assert R.ann_rates(events) == {"m": [(110.0, 10.0), (115.0, 6.0)]}
    assert R.ann_bytes_per_link(events, str(tmp_path)) == {"r--m": 81920, "p--r": 81920}
    result = R.render_report(tmp_path, tmp_path / "out")
    assert [os.path.basename(p) for p in result["plots"]][-1] == "chain.png"
    assert os.path.getsize(tmp_path / "out" / "chain.png") > 1000
    assert "chain.png" in (tmp_path / "out" / "index.html").read_text()
