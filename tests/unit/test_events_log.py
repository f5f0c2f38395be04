"""testbed.events: the append-only events.jsonl from several processes, the reader's filters, and the counters
sampler polling real AgentClient connections over Unix sockets."""
import json
import multiprocessing
import os
import socket
import threading
import time

import pytest

from testbed import events as ev
from testbed.waiting import wait_until

WRITERS = 4
PER_WRITER = 250


def _writer(path, wid, n):
    log = ev.EventLog(path)
    for seq in range(n):
        # lines of 100 B .. 9 kB: larger than PIPE_BUF, so only one-write-per-line O_APPEND keeps them whole
        log.append("counters", node=f"w{wid}", link="eth0", writer=wid, seq=seq, pad="x" * ((seq * 37) % 9000))
    log.close()


def test_several_processes_append_whole_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, PER_WRITER)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    errors = []
    got = ev.read_events(path, errors=errors)
    assert errors == []
    assert len(got) == WRITERS * PER_WRITER
    for w in range(WRITERS):
        seqs = [e["details"]["seq"] for e in got if e["details"]["writer"] == w]
        assert seqs == list(range(PER_WRITER))       # each writer's events in its own order, none lost
    assert all(e["details"]["pad"] == "x" * ((e["details"]["seq"] * 37) % 9000) for e in got)
    with open(path, "rb") as f:
        assert all(json.loads(line)["kind"] == "counters" for line in f)


def test_event_shape_and_directory_path(tmp_path):
    log = ev.EventLog(tmp_path)                    # a run directory: events.jsonl inside it
    e = log.append(ev.FAULT, link="n1-n2", ts=100.5, type="loss", id="f1", loss=0.2)
    assert e == {"ts": 100.5, "kind": "fault", "node": None, "link": "n1-n2",
                 "details": {"type": "loss", "id": "f1", "loss": 0.2}}
    assert ev.read_events(tmp_path) == [e]
    before = time.time()
    assert log.append("up", node="n1")["ts"] >= before


@pytest.mark.parametrize("call", [
    lambda log: log.append("Bad Kind"),
    lambda log: log.append(""),
    lambda log: log.append("fault", node=3),
    lambda log: log.append("fault", blob=b"bytes"),
    lambda log: log.append("fault", value=float("nan")),
    lambda log: log.write(ev.make_event("fault", details=["not", "a", "dict"])),
])
def test_bad_events_are_rejected_and_nothing_is_written(tmp_path, call):
    log = ev.EventLog(tmp_path / "events.jsonl")
    with pytest.raises(ev.EventLogError):
        call(log)
    assert not (tmp_path / "events.jsonl").exists() or (tmp_path / "events.jsonl").read_bytes() == b""


def test_unwritable_log_is_a_clear_error(tmp_path):
    with pytest.raises(ev.EventLogError, match="cannot open"):
        ev.EventLog(tmp_path / "missing-dir" / "events.jsonl").append("up")


def test_reader_skips_and_reports_bad_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    log = ev.EventLog(path)
    log.append("up", node="a", ts=1)
    with open(path, "ab") as f:
        f.write(b"not json\n")
        f.write(b'{"kind": "up"}\n')                     # no ts
        f.write(b'{"ts": true, "kind": "up"}\n')         # bool is not a time
        f.write(b"\n")
    log.append("down", node="a", ts=2)
    with open(path, "ab") as f:
        f.write(b'{"ts": 3, "kind": "up", "node": "a", "details": {}}')   # writer killed before the newline
    errors = []
    got = ev.read_events(path, errors=errors)
    assert [(e["kind"], e["ts"]) for e in got] == [("up", 1), ("down", 2)]
    assert [n for n, _ in errors] == [2, 3, 4, 7]
    assert "partial" in errors[-1][1]


def test_reader_filters(tmp_path):
    log = ev.EventLog(tmp_path)
    log.append("fault", link="a-b", ts=1, id="f1")
    log.append("counters", node="a", link="eth0", ts=2, tx_bytes=10)
    log.append("counters", node="b", link="eth0", ts=3, tx_bytes=20)
    log.append("heal", link="a-b", ts=4, id="f1")
    log.append("assertion", ts=5, name="reach", ok=False)
    kinds = lambda es: [e["kind"] for e in es]  # noqa: E731
    assert kinds(ev.read_events(tmp_path, kind="counters")) == ["counters", "counters"]
    assert kinds(ev.read_events(tmp_path, kind={"fault", "heal"})) == ["fault", "heal"]
    assert [e["ts"] for e in ev.read_events(tmp_path, node="b")] == [3]
    assert kinds(ev.read_events(tmp_path, link="a-b")) == ["fault", "heal"]
    assert [e["ts"] for e in ev.read_events(tmp_path, since=2, until=4)] == [2, 3, 4]
    assert kinds(ev.read_events(tmp_path, where=lambda e: e["details"].get("ok") is False)) == ["assertion"]
    assert ev.read_events(tmp_path, kind="counters", node="a", since=3) == []


# -- counters sampler ------------------------------------------------------------------------------------

class FakeAgent:
    """A Unix-socket server speaking the agent's control protocol (JSON lines), answering ``counters``."""

    def __init__(self, path, name):
        self.path = str(path)
        self.name = name
        self.polls = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while b"\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
                req = json.loads(buf.partition(b"\n")[0])
                self.polls += 1
                if req["cmd"] != "counters":
                    answer = {"ok": False, "error": "unknown command"}
                else:
                    n = self.polls
                    answer = {"ok": True, "tun": {"tun_rx_packets": n}, "drops": {"no_path": 1},
                              "switch": {"forwarded": 10 * n}, "path_failures": {},
                              "interfaces": {"eth0": {"rx_packets": n, "rx_bytes": 1000 * n, "tx_packets": n,
                                                      "tx_bytes": 2000 * n, "drops": {}},
                                             "eth1": {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0,
                                                      "tx_bytes": 0, "drops": {"peer_unreachable": n}}}}
                conn.sendall(json.dumps(answer).encode() + b"\n")

    def close(self):
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture
def agent(tmp_path):
    a = FakeAgent(tmp_path / "n1.sock", "n1")
    yield a
    a.close()


def test_sampler_writes_per_link_and_per_node_samples(tmp_path, agent):
    log = ev.EventLog(tmp_path)
    sampler = ev.CountersSampler(log, {"n1": agent.path, "n2": str(tmp_path / "gone.sock")}, timeout_s=2)
    assert sampler.sample_once(ts=10.0) == 3
    assert sampler.sample_once(ts=11.0) == 3
    samples = ev.read_events(tmp_path, kind="counters")
    per_link = [(e["ts"], e["link"], e["details"]["tx_bytes"]) for e in samples if e["link"]]
    assert per_link == [(10.0, "eth0", 2000), (10.0, "eth1", 0), (11.0, "eth0", 4000), (11.0, "eth1", 0)]
    node = [e for e in samples if e["link"] is None]
    assert [e["details"]["switch"]["forwarded"] for e in node] == [10, 20]
    assert all(e["node"] == "n1" and "ok" not in e["details"] for e in samples)
    # the missing agent: counted every time, logged once
    assert sampler.failures == {"n2": 2}
    [err] = ev.read_events(tmp_path, kind=ev.SAMPLER_ERROR)
    assert err["node"] == "n2" and "error" in err["details"]


def test_sampler_thread_runs_until_stopped(tmp_path, agent):
    log = ev.EventLog(tmp_path)
    sampler = ev.CountersSampler(log, {"n1": agent.path}, interval_s=0.02).start()
    wait_until(lambda: sampler.samples >= 3, 30, "three samples", 0.01)
    sampler.stop()
    done = sampler.samples
    assert done >= 3
    got = ev.read_events(tmp_path, kind="counters", link="eth0")
    assert len(got) == done and [e["details"]["tx_bytes"] for e in got] == sorted(e["details"]["tx_bytes"] for e in got)
    assert sampler._thread is None


def test_sampler_survives_an_agent_that_answers_an_error(tmp_path):
    class Broken:
        def call(self, cmd):
            raise RuntimeError("agent error")
    log = ev.EventLog(tmp_path)
    sampler = ev.CountersSampler(log, {"bad": Broken()})
    assert sampler.sample_once() == 0 and sampler.failures == {"bad": 1}
    with pytest.raises(ValueError):
        ev.CountersSampler(log, {}, interval_s=0)
