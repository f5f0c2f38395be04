"""Hostile local input on the agent's control socket (issue 13 item 7): deeply nested JSON, numbers no float can
hold, infinities. Each gets a clear error naming what is wrong, never "internal error", and the agent goes on
answering. A real Unix socket, a real event loop and a real peer link (UDP on ::1, no root)."""
import socket
import threading

import pytest

from node.agent.agent import Agent
from node.agent.config import parse_config
from node.agent.control_api import ControlServer
from node.agent.control_client import AgentClient
from node.agent.event_loop import EventLoop
from node.tun_switch.link_emulation import LinkParams
from node.tun_switch.peer_link import PeerLink
from node.cjdns import keys


def free_port():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


@pytest.fixture
def agent(tmp_path):
    ident = keys.Identity.from_seed(b"control-input", 0)
    cfg = parse_config({"node": "c", "private_key": ident.private_key.hex(),
                        "control_socket": str(tmp_path / "agent.sock"), "log_file": str(tmp_path / "agent.log"),
                        "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": []})
    loop = EventLoop()
    agent = Agent(cfg, loop)
    agent.node.add_link(PeerLink(2, "veth0", "::1", "::1", free_port(), loop=loop))
    server = ControlServer(cfg.control_socket, loop, agent.handlers(), agent.node.errors)
    loop.call_every(0.02, lambda: None)          # wakes the loop to see the stop from the test's thread
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    yield agent, AgentClient(cfg.control_socket, timeout=5)
    loop.call_later(0, loop.stop)
    thread.join(5)
    server.close()
    agent.close()
    loop.close()


def raw_request(path, line: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(line + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_an_error_answer(agent, depth):
    a, client = agent
    answer = raw_request(client.path, b"[" * depth + b"]" * depth)
    assert b"nested too deeply" in answer or b"invalid JSON" in answer
    nested = b'{"cmd": "status", "x": ' + b"[" * depth + b"]" * depth + b"}"
    assert b"nested too deeply" in raw_request(client.path, nested)
    assert client.call("status")["node"] == "c"                       # still answering
    assert a.node.errors.counts == {} and a.loop.errors.counts == {}


BIG = 10**400


@pytest.mark.parametrize("field", ["delay_s", "jitter_s", "loss", "rate_bps"])
@pytest.mark.parametrize("value", [BIG, -BIG])
def test_set_link_with_a_huge_integer_names_the_field(agent, field, value):
    a, client = agent
    answer = client.request({"cmd": "set_link", "ifname": "veth0", field: value})
    assert answer["ok"] is False and field in answer["error"] and "internal error" not in answer["error"]
    assert a.node.errors.counts == {}


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e309"])
def test_set_link_refuses_non_finite_numbers(agent, value):
    """Python's JSON reads Infinity and NaN (and 1e309 as infinity): not a delay or a rate."""
    a, client = agent
    line = b'{"cmd": "set_link", "ifname": "veth0", "delay_s": %s}' % value.encode()
    answer = raw_request(client.path, line)
    assert b'"ok": false' in answer and b"delay_s" in answer and b"internal error" not in answer


def test_set_link_still_works(agent):
    a, client = agent
    assert client.call("set_link", ifname="veth0", delay_s=0.01)["link_emulation"]["delay_s"] == 0.01


@pytest.mark.parametrize("params, field", [({"delay_s": 1e300}, "delay_s"), ({"jitter_s": 1e9}, "jitter_s"),
                                           ({"rate_bps": 1e300}, "rate_bps")])
def test_link_params_have_upper_bounds(params, field):
    """A delay beyond what a timer can wait for, or a rate beyond any link, is refused by name."""
    with pytest.raises(ValueError, match=field):
        LinkParams.from_dict(params)


@pytest.mark.parametrize("value", [BIG, float("nan"), float("inf"), 1e300])
def test_link_params_problems_name_huge_and_non_finite_values(value):
    """LinkParams.problems() is the one place of the range checks (the topology check uses it for parameters
    built in code): a 400-digit integer is a problem named by field, not an OverflowError, and so is a delay no
    timer can wait for."""
    problems = LinkParams(delay_s=value, loss=value).problems()
    assert [p.split(":")[0] for p in problems] == ["delay_s", "loss"]
