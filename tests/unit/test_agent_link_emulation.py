"""Pure link emulation logic: loss, duplication, corruption, delay/jitter, reordering, token-bucket rate."""

import random

import pytest

from node.tun_switch.link_emulation import QUEUE_LIMIT_S, LinkEmulator, LinkParams

PKT = bytes(range(256)) * 4


def run(params, n=2000, seed=1, spacing=0.001, size=None):
    emu = LinkEmulator(LinkParams(**params), random.Random(seed))
    out = []
    for i in range(n):
        pkt = PKT if size is None else bytes(size)
        out.append(emu.process(pkt, i * spacing))
    return emu, out


def test_inactive_by_default_and_passthrough():
    emu = LinkEmulator()
    assert not emu.active
    assert emu.process(b"abc", 5.0) == [(5.0, b"abc")]


def test_loss_rate_is_close_to_probability():
    emu, out = run({"loss": 0.3}, n=5000)
    lost = sum(1 for o in out if not o)
    assert 0.25 < lost / 5000 < 0.35
    assert emu.counters["lost"] == lost


def test_total_loss_and_no_loss():
    assert all(o == [] for o in run({"loss": 1.0}, n=100)[1])
    assert all(len(o) == 1 for o in run({"loss": 0.0, "delay_s": 0.01}, n=100)[1])


def test_duplicate_sends_two_copies():
    emu, out = run({"duplicate": 1.0}, n=50)
    assert all(len(o) == 2 and o[0][1] == o[1][1] == PKT for o in out)


def test_corrupt_flips_exactly_one_bit():
    emu, out = run({"corrupt": 1.0}, n=200)
    for o in out:
        (_, pkt), = o
        diff = sum(bin(a ^ b).count("1") for a, b in zip(pkt, PKT))
        assert diff == 1 and len(pkt) == len(PKT)


def test_delay_and_jitter_bounds():
    _, out = run({"delay_s": 0.05, "jitter_s": 0.01}, n=500)
    delays = [o[0][0] - i * 0.001 for i, o in enumerate(out)]
    assert all(0.04 - 1e-9 <= d <= 0.06 + 1e-9 for d in delays)
    assert max(delays) - min(delays) > 0.01     # jitter really varies


def test_jitter_never_negative():
    _, out = run({"delay_s": 0.001, "jitter_s": 0.05}, n=500)
    assert all(o[0][0] >= i * 0.001 for i, o in enumerate(out))


def test_reorder_lets_packets_overtake():
    emu, out = run({"delay_s": 0.02, "reorder": 0.25}, n=1000)
    times = [o[0][0] for o in out]
    overtakes = sum(1 for a, b in zip(times, times[1:]) if b < a)
    assert overtakes > 100
    assert 150 < emu.counters["reordered"] < 350


def test_rate_limits_long_run_throughput():
    rate = 8_000_000          # 1 MB/s
    emu = LinkEmulator(LinkParams(rate_bps=rate), random.Random(0))
    sent = []
    t = 0.0
    for _ in range(4000):     # offer 1000-byte packets at 2 MB/s for 2 s
        sent += emu.process(bytes(1000), t)
        t += 0.0005
    assert emu.counters["queue_dropped"] > 0
    last = max(w for w, _ in sent)
    delivered = sum(len(p) for _, p in sent)
    assert delivered * 8 / last == pytest.approx(rate, rel=0.1)


def test_rate_departures_are_ordered_and_bounded_by_queue_limit():
    emu = LinkEmulator(LinkParams(rate_bps=1_000_000), random.Random(0))
    prev = 0.0
    for i in range(1000):
        now = i * 0.001
        for when, _ in emu.process(bytes(1500), now):
            assert when >= prev and when - now <= QUEUE_LIMIT_S + 1e-9
            prev = when


def test_rate_under_capacity_adds_no_delay():
    emu = LinkEmulator(LinkParams(rate_bps=100_000_000), random.Random(0))
    for i in range(100):
        (when, _), = emu.process(bytes(1000), i * 0.01)
        assert when == i * 0.01


def test_params_validation():
    with pytest.raises(ValueError, match="loss"):
        LinkParams.from_dict({"loss": 1.5})
    with pytest.raises(ValueError, match="delay_s"):
        LinkParams.from_dict({"delay_s": -1})
    with pytest.raises(ValueError, match="unknown parameter"):
        LinkParams.from_dict({"latency": 1})
    with pytest.raises(ValueError, match="number"):
        LinkParams.from_dict({"rate_bps": "fast"})
    with pytest.raises(ValueError, match="number"):
        LinkParams.from_dict({"loss": True})
    p = LinkParams.from_dict({"delay_s": 0.1})
    assert p.active and not LinkParams().active
    assert p.merged({"delay_s": 0}).active is False
