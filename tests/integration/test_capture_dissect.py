"""Real captures of a ping across three hops, dissected: on plaintext links each hop shows the switch's label
rewrite; on encrypted links (the default) a sniffer on any link sees only the link sessions' ciphertext."""
import os
import signal
import subprocess
import time

import pytest

from node.cjdns.labels import bit_reverse64, parse_label_text
from testbed.backends import exec_in
from testbed.dissect import dissect_pcap
from testbed.mesh import Mesh
from testbed.topology import load

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


@pytest.fixture(scope="module")
def runs_home(tmp_path_factory):
    os.environ["PKTLAB_HOME"] = str(tmp_path_factory.mktemp("runs"))
    yield
    del os.environ["PKTLAB_HOME"]


@pytest.fixture(scope="module")
def plain_line4(runs_home):
    topo = load("line:4")
    topo.attrs["link_crypto"] = False
    mesh = Mesh.up(topo, name="capture-plain")
    yield mesh
    mesh.down()


@pytest.fixture(scope="module")
def line4(runs_home):
    mesh = Mesh.up("line:4", name="capture")
    yield mesh
    mesh.down()


MARKER = "fac3b00c"


def capture_ping(mesh, tmp_path):
    """tcpdump on every link (at its a end, so both directions) while n1 pings n4 with MARKER as the payload
    pattern; [(pcap, the a end's underlay address)] in link order n1-n2, n2-n3, n3-n4."""
    hops = [(rec["a"], rec["a_if"], rec["a_addr"]) for rec in mesh.run.state["links"]]
    assert [n for n, _, _ in hops] == ["n1", "n2", "n3"]
    captures = []
    for node, ifname, addr in hops:
        path = tmp_path / f"{ifname}.pcap"
        proc = exec_in(mesh.run, node, ["tcpdump", "-i", ifname, "--immediate-mode", "-U", "-n", "-w", str(path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        captures.append((path, proc, addr))
    time.sleep(1.0)
    ping = mesh.exec("n1", ["ping", "-6", "-c", "3", "-i", "0.2", "-s", "64", "-p", MARKER, mesh.ip6("n4")])
    assert ping.returncode == 0
    time.sleep(1.2)             # a link ping each way on every link too
    for _, proc, _ in captures:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    return [(path, addr) for path, _, addr in captures]


def test_a_sniffer_on_any_encrypted_link_sees_only_ciphertext(line4, tmp_path):
    for path, _ in capture_ping(line4, tmp_path):
        summaries = [s for s in dissect_pcap(str(path)) if "]:" in s.src]    # UDP (not the kernel's own ND/MLD)
        assert len(summaries) >= 6, f"{path.name}: the echoes and link pings cross every link"
        assert bytes.fromhex(MARKER) not in path.read_bytes()
        for s in summaries:
            assert not s.notes, s.text()
            assert [name for name, _ in s.layers] == ["link data"], s.text()     # sessions up: data only
        # read as plaintext frames, the same datagrams make no sense: no valid control message, no session
        plain = dissect_pcap(str(path), link_crypto=False)
        assert not any(s.layer("cjdns control") and s.layer("cjdns control").get("checksum") == "ok"
                       for s in plain)


def test_three_hop_ping_shows_each_label_rewrite(plain_line4, tmp_path):
    mesh = plain_line4
    captures = capture_ping(mesh, tmp_path)

    # the echo requests are the CryptoAuth data packets of n1's session to n4 that cross all three hops
    per_hop = []
    for path, addr in captures:  # what leaves towards n4 on each hop
        data = [s for s in dissect_pcap(str(path), link_crypto=False)
                if s.layer("CryptoAuth data") and s.src.startswith(f"[{addr}]")]
        assert data, f"no session data packets captured in {path.name}"
        per_hop.append(data)
    # follow one packet to n4 (present on all three hops): the same tag at every hop, so the encrypted part
    # crossed unchanged; only the label and the label shift change
    tags = [{s.layer("CryptoAuth data")["tag"]: s for s in hop} for hop in per_hop]
    through = [t for t in tags[0] if t in tags[1] and t in tags[2]]
    assert len(through) >= 3, "the echo requests must cross all three hops"
    frames = [hop[through[0]].layer("cjdns switch") for hop in tags]
    shifts = [f["label_shift"] for f in frames]
    assert shifts == sorted(shifts) and len(set(shifts)) == 3, f"label shift must grow at each hop: {shifts}"
    labels = [parse_label_text(f["label"]) for f in frames]
    assert len(set(labels)) == 3, "each switch rewrites the label"
    # each rewrite consumes the next director (the forward part shifts right) and puts the bit-reversed return
    # director in the top bits; the return bits accumulate
    forward = [label & ((1 << (64 - f["label_shift"])) - 1) for label, f in zip(labels, frames)]
    for k in (1, 2):
        consumed = shifts[k] - shifts[k - 1]
        assert forward[k] == forward[k - 1] >> consumed
        old_return = labels[k - 1] >> (64 - shifts[k - 1])
        assert (labels[k] >> (64 - shifts[k])) & ((1 << shifts[k - 1]) - 1) == old_return
    assert bit_reverse64(labels[-1]) & 1, "the return path ends at the sender's router"
