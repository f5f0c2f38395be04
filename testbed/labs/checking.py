"""What checkers report, and the measurements several of them share.

A checker returns Check results: what was checked, whether it holds, what was seen, and a hint for a student who
is stuck (shown only when the check fails). `pktlab lab check` passes when every check holds.

Measurements (the same code answers `pktlab lab measure`, so a student measures what the checker measures):

* flood(mesh, senders, receiver): UDP floods from several nodes to one, at a fixed packet rate each, counted per
  source at the receiver (testbed/udp_receiver.py) -> steady kbit/s per sender after a warm-up;
* traffic_classes(mesh, node, senders): the PKT priority and customer bit of the switch headers arriving at a node
  from each sender (a capture on the node's veths while the senders ping it; a frame is the sender's when it
  carries the node's CryptoAuth handle for its session with the sender).
"""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass

FLOOD_PORT = 9400
FLOOD_PPS = 300             # 900-byte datagrams: 2.2 mbit/s per sender, above the labs' 2 mbit/s links
WARMUP_S = 3


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def missing(run, *names) -> list[Check]:
    """A failed check per answer not given yet, naming how to give it."""
    return [Check(f"answer {n}", False, "not given yet",
                  f"pktlab lab answer {run.lab.number} {n}=...  ({run.lab.answers[n]})")
            for n in names if run.answer(n) is None]


def node_list(text: str) -> list[str]:
    """"a,b,c", "a b c", "a -> b -> c" -> ["a", "b", "c"]."""
    return [w for w in re.split(r"[\s,>→-]+", text or "") if w]


def number(text: str | None) -> float | None:
    """A number in an answer ("9.5", "1800kbit", "2:1" -> 2.0); None if there is none."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?::\s*([0-9]*\.?[0-9]+))?\s*[a-zA-Z/%]*\s*", str(text))
    if not m:
        return None
    value = float(m.group(1))
    return value / float(m.group(2)) if m.group(2) and float(m.group(2)) else value


def close(got: float | None, want: float, rel: float) -> bool:
    return got is not None and abs(got - want) <= rel * abs(want)


SENDER = r"""
import socket, sys, time
dest, port, pps, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
payload = bytes(900); start = time.monotonic(); sent = 0
while time.monotonic() - start < duration:
    while sent < (time.monotonic() - start) * pps:
        try:
            s.sendto(payload, (dest, port))
        except OSError:
            pass
        sent += 1
    time.sleep(0.002)
"""


def flood(mesh, senders: list[str], receiver: str, seconds: float = 8.0) -> dict[str, float]:
    """Steady kbit/s per sender (after WARMUP_S) of simultaneous UDP floods to the receiver."""
    from testbed.backends import exec_in
    from testbed.udp_receiver import kbit_after
    for s in senders:      # sessions first: a handshake is not part of the measurement
        mesh.ping(s, receiver, count=1)
    rx = exec_in(mesh.run, receiver, [sys.executable, "-m", "testbed.udp_receiver", str(FLOOD_PORT), str(seconds)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    tx = [exec_in(mesh.run, s, [sys.executable, "-c", SENDER, mesh.ip6(receiver), str(FLOOD_PORT), str(FLOOD_PPS),
                                str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          for s in senders]
    try:
        out, err = rx.communicate(timeout=seconds + 20)
    finally:
        for p in tx:
            p.wait(timeout=10)
    if rx.returncode != 0:
        raise RuntimeError(f"the receiver on {receiver} failed: {err.strip()}")
    got = {ipaddress.ip_address(a).compressed: v for a, v in json.loads(out).items()}
    return {s: round(kbit_after(got.get(ipaddress.ip_address(mesh.ip6(s)).compressed, [0] * int(seconds + 1)),
                                WARMUP_S, seconds), 1) for s in senders}


CAPTURE = r"""
import json, socket, struct, sys, time
ifnames, duration = sys.argv[1].split(","), float(sys.argv[2])
socks = []
for name in ifnames:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
    s.bind((name, 0)); s.setblocking(False); socks.append(s)
seen = []; start = time.monotonic()
while time.monotonic() - start < duration:
    for s in socks:
        try:
            frame, addr = s.recvfrom(65535)
        except BlockingIOError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        ip = frame[14:]
        if len(ip) >= 64 and ip[6] == 17:      # switch header after IPv6 + UDP, then the session's handle
            seen.append(struct.unpack_from(">HI", ip, 48 + 10))
    time.sleep(0.001)
print(json.dumps(seen))
"""


def traffic_classes(mesh, node: str, senders: list[str], seconds: float = 3.0) -> dict[str, dict]:
    """{sender: {(priority, customer): frames}} of the switch headers reaching `node` while each sender pings it,
    read from a raw capture on the node's veths. A sender's frames are those of its CryptoAuth session with the
    node: they carry the node's handle for that session (the 4 bytes after the switch header). Other frames
    arrive meanwhile: link pings and control messages (unclassed) and the keepalives of every other session
    the node has (each side of a session answers the other's every second)."""
    from node.cjdns import switch_header
    from testbed.backends import exec_in
    ifnames = [rec["a_if"] if rec["a"] == node else rec["b_if"] for rec in mesh.run.state["links"]
               if node in (rec["a"], rec["b"])]
    out = {}
    for s in senders:
        mesh.ping(s, node, count=1)
        cap = exec_in(mesh.run, node, [sys.executable, "-c", CAPTURE, ",".join(ifnames), str(seconds)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        mesh.ping(s, node, count=5)
        seen, _ = cap.communicate(timeout=seconds + 10)
        handle = next((x["my_handle"] for x in mesh.agent(node).call("sessions")["sessions"]
                       if ipaddress.ip_address(x["ip6"]) == ipaddress.ip_address(mesh.ip6(s))), None)
        classes = {}
        for tc, frame_handle in json.loads(seen or "[]"):
            if frame_handle != handle or tc == switch_header.UNCLASSED:
                continue
            key = (tc >> 12, (tc >> 11) & 1)
            classes[key] = classes.get(key, 0) + 1
        out[s] = classes
    return out
