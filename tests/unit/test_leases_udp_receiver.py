"""testbed.udp_receiver, the receiving end of the lease/priority UDP floods: per-source per-second byte counts
and the steady-state rate after a warm-up derived from them."""
import json
import socket

import pytest

from testbed import udp_receiver as R


def test_counts_bytes_per_source_and_second():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
        sock.bind(("::1", 0))
        for size in (900, 900, 100):        # queued before the receiver starts: all in its first second
            sender.sendto(bytes(size), sock.getsockname()[:2])
        got = R.receive(sock, 0.5)
    assert got == {"::1": [1900]}            # int(0.5) + 1 buckets


def test_kbit_after_warm_up_averages_the_remaining_seconds():
    per_second = [10_000, 10_000, 10_000, 1000, 2000, 3000, 0, 0, 0]      # 8 s run: second 8 never fills
    assert R.kbit_after(per_second, 3.0, 8.0) == pytest.approx(6000 * 8 / 1000 / 5)
    assert R.kbit_after([125] * 3, 0, 2) == pytest.approx(1.5)
    for warmup in (2.5, 8.0, -1):
        with pytest.raises(ValueError):
            R.kbit_after(per_second, warmup, 8.0)


def test_command_line_prints_json_and_rejects_bad_arguments(capsys, monkeypatch):
    monkeypatch.setattr(R, "receive", lambda sock, seconds: {"fc00::1": [int(seconds)]})
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.bind(("::", 0))
        free_port = probe.getsockname()[1]
    assert R.main([str(free_port), "2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"fc00::1": [2]}
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
        taken.bind(("::", 0))
        assert R.main([str(taken.getsockname()[1]), "1"]) == 1        # port in use: a clear error, no traceback
        assert "cannot listen" in capsys.readouterr().err
    for argv in (["0", "1"], ["70000", "1"], ["9000", "0"], ["x", "1"]):
        with pytest.raises(SystemExit) as exc:
            R.main(argv)
        assert exc.value.code == 2
