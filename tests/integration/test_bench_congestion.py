"""bench.congestion's mechanics, CI-sized (--quick: 2 RTT points, short flows, 2 competing flows): the emulated
delay and loss are what was asked, each flow runs the congestion control asked for, retransmissions are counted,
the fair-share runs go through r1's scheduler, the claims table and the plots are written. No timing is checked
(the full sweep runs under `make bench`). Marked slow (137 s in CI): `make bench` runs the bench itself."""
import json
import os

import pytest

from bench import congestion as C

pytestmark = [pytest.mark.slow, pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]


def test_quick_congestion_bench(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))
    assert C.main(["--quick", "--results", str(tmp_path)]) == 0
    d = json.loads((tmp_path / "congestion.json").read_text())
    plan = C.QUICK

    # the delay is on the path (ping sees at least the RTT asked for; how much more depends on the machine's load),
    # iperf3 sees the loss asked for (and a loaded machine's own losses at most)
    assert [c["asked_ms"] for c in d["calibration"]["rtt"]] == plan.rtts_ms
    for c in d["calibration"]["rtt"]:
        assert c["asked_ms"] <= c["ping_ms"], c
    for c in d["calibration"]["loss"]:
        assert c["iperf3_udp"] is not None, f"iperf3 gave no UDP summary in 3 attempts: {c}"
        assert c["asked"] - 0.015 <= c["iperf3_udp"] <= c["asked"] + 0.05, c

    points = d["sweep"]
    assert len(points) == len(plan.rtts_ms) * len(plan.losses) * len(plan.ccs) + len(plan.losses) * len(plan.ccs)
    for p in points:
        assert "error" not in p, p
        assert p["congestion_control"] == p["cc"]                 # the socket ran what was asked
        assert p["goodput_bps"] > 0 and p["retrans_segs"] >= 0 and p["out_segs"] > 100
        assert (p["bottleneck"]["random_lost"] > 0) == (p["loss"] > 0)          # the loss is on the path
        queue = "fair_dropped" if p["mode"] == "fair" else "fifo_dropped"
        other = "fifo_dropped" if p["mode"] == "fair" else "fair_dropped"
        assert p["bottleneck"][other] == 0, p                     # only the mode's own queue can drop
        assert queue in p["bottleneck"]
    lossy = [p for p in points if p["loss"] > 0]
    assert all(p["retrans_segs"] > 0 and p["retransmits_iperf"] > 0 for p in lossy)

    runs = d["competing"]
    assert {(c["mode"], c["cc"]) for c in runs} == {(m, cc) for m in ("fifo", "fair") for cc in plan.ccs}
    for c in runs:
        assert len(c["flows"]) == 2 and all(f["series"] and f["congestion_control"] == c["cc"] for f in c["flows"])
        assert 0 < c["jain"] <= 1 and c["total_bps"] > 0
        assert c["flows"][1]["started_s"] >= plan.stagger_s * 0.9                # staggered
    # the last run (fair, bbr) left r1's scheduler on: it told the two (source, destination) pairs apart
    (link,) = d["fair_share_at_end"]["links"].values()
    assert sum(1 for f in link["flows"] if f["sent_bytes"] > 1_000_000) == 2

    assert {r["verdict"] for r in d["claims"]} and all(r["measured"] for r in d["claims"])
    assert sorted(d["plots"]) == sorted(["congestion_rtt.png", "congestion_loss.png", "congestion_competing_2.png",
                                         "congestion_fairness.png"])
    for name in d["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
