"""Control API server + client over a real Unix socket (no root): sync and deferred answers, bad requests."""

import json
import socket
import threading

import pytest

from node.agent.control_api import CommandError, ControlServer
from node.agent.control_client import AgentClient, AgentError
from node.agent.event_loop import EventLoop


@pytest.fixture
def server(tmp_path):
    loop = EventLoop()
    path = str(tmp_path / "agent.sock")

    def echo(req, respond):
        return {"echo": req.get("value")}

    def later(req, respond):
        loop.call_later(0.05, respond, {"late": True})
        return None

    def refuse(req, respond):
        raise CommandError("refused on purpose")

    def crash(req, respond):
        raise RuntimeError("boom")

    def stop(req, respond):
        respond({"stopping": True})
        loop.call_later(0, loop.stop)

    srv = ControlServer(path, loop, {"echo": echo, "later": later, "refuse": refuse, "crash": crash,
                                     "stop": stop})
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    yield path
    if thread.is_alive():
        AgentClient(path).call("stop")
        thread.join(5)
    srv.close()
    loop.close()


def test_sync_and_deferred_answers(server):
    c = AgentClient(server)
    assert c.call("echo", value=[1, 2]) == {"ok": True, "echo": [1, 2]}
    assert c.call("later") == {"ok": True, "late": True}


def test_errors_are_answers_not_crashes(server):
    c = AgentClient(server)
    with pytest.raises(AgentError, match="refused on purpose"):
        c.call("refuse")
    with pytest.raises(AgentError, match="internal error: boom"):
        c.call("crash")
    with pytest.raises(AgentError, match="unknown command"):
        c.call("nope")
    assert c.request({"nocmd": 1}) == {"ok": False, "error": 'request must be an object with a string "cmd"'}
    assert not c.request([1, 2])["ok"]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(server)
        s.sendall(b"{broken\n")
        answer = json.loads(s.recv(4096))
        assert not answer["ok"] and "invalid JSON" in answer["error"]
        # several requests on one connection, in one write
        s.sendall(b'{"cmd": "echo", "value": 1}\n{"cmd": "echo", "value": 2}\n')
        buf = b""
        while buf.count(b"\n") < 2:
            buf += s.recv(4096)
        assert [json.loads(line)["echo"] for line in buf.splitlines()] == [1, 2]
    # a client that disconnects before its deferred answer does not hurt the server
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(server)
        s.sendall(b'{"cmd": "later"}\n')
    assert c.call("echo", value="still alive")["echo"] == "still alive"


def test_socket_file_removed_on_close(tmp_path):
    loop = EventLoop()
    path = str(tmp_path / "s.sock")
    srv = ControlServer(path, loop, {})
    assert (tmp_path / "s.sock").exists()
    srv.close()
    assert not (tmp_path / "s.sock").exists()
    loop.close()


def test_socket_handed_to_an_owner(tmp_path):
    """On an SSH host the agent runs as root and hands its socket to the SSH user, who forwards it."""
    import os
    loop = EventLoop()
    path = tmp_path / "s.sock"
    uid = 12345 if os.geteuid() == 0 else os.geteuid()    # without root only our own uid can be given
    srv = ControlServer(str(path), loop, {}, owner=uid)
    st = path.stat()
    assert st.st_uid == uid and st.st_mode & 0o777 == 0o600
    srv.close()
    loop.close()
