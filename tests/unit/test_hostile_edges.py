"""The handler edge (issue 13): an exception in a packet, request or timer handler is caught at the handler's
edge, counted by reason (handler:ExceptionType), logged once per reason, and never stops the loop, the node's
periodic work or a session. Real event loop, real sockets; in-memory links for the data plane."""
import logging
import socket
import threading

import pytest

from node.agent.agent import Agent
from node.agent.config import parse_config
from node.agent.control_api import ControlServer
from node.agent.control_client import AgentClient, AgentError
from node.agent.event_loop import EventLoop
from node.agent.handler_errors import HandlerErrors
from node.tun_switch.memory_links import ManualLoop

from test_hostile_link_pong import two_nodes


def run_for(loop, ticks_of, n):
    """Run the loop until the callback counted in ``ticks_of`` ran n times (or 5 s passed)."""
    loop.call_later(5.0, loop.stop)
    loop.call_every(0.001, lambda: ticks_of[0] >= n and loop.stop())
    loop.run()


def test_a_raising_timer_and_reader_do_not_stop_the_loop(caplog):
    loop = EventLoop()
    ticks = [0]
    a, b = socket.socketpair()
    a.setblocking(False)

    def bad_timer():
        raise KeyError("boom")

    def bad_reader():
        a.recv(100)
        raise ZeroDivisionError

    def good_timer():
        ticks[0] += 1
        b.send(b"x")            # makes the bad reader readable every time

    loop.call_every(0.001, bad_timer)
    loop.call_every(0.001, good_timer)
    loop.add_reader(a, bad_reader)
    with caplog.at_level(logging.ERROR):
        run_for(loop, ticks, 50)
    assert ticks[0] >= 50                                            # the loop kept going
    counts = loop.errors.counts
    assert counts["test_a_raising_timer_and_reader_do_not_stop_the_loop.<locals>.bad_timer:KeyError"] >= 49
    assert counts["test_a_raising_timer_and_reader_do_not_stop_the_loop.<locals>.bad_reader:ZeroDivisionError"] >= 10
    logged = [r for r in caplog.records if "bad_timer" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info                   # once, with the traceback
    loop.close()
    a.close()
    b.close()


def test_a_timer_far_in_the_future_does_not_break_the_loop():
    loop = EventLoop()
    ticks = [0]
    loop.call_later(1e300, lambda: None)          # epoll refuses such a timeout
    loop.call_every(0.001, lambda: ticks.__setitem__(0, ticks[0] + 1))
    run_for(loop, ticks, 5)
    assert ticks[0] >= 5 and loop.errors.counts == {}
    loop.close()


def test_a_timer_at_nan_is_refused():
    loop = EventLoop()
    with pytest.raises(ValueError, match="NaN"):
        loop.call_later(float("nan"), lambda: None)
    loop.close()


def test_guard_counts_every_occurrence_and_logs_once(caplog):
    errors = HandlerErrors()
    fn = errors.guard("demo", lambda x: 1 // x, result="fallback")
    with caplog.at_level(logging.ERROR):
        assert [fn(0) for _ in range(5)] == ["fallback"] * 5
        assert fn(1) == 1
    assert errors.counts == {"demo:ZeroDivisionError": 5}
    assert len([r for r in caplog.records if "demo" in r.getMessage()]) == 1


def test_route_server_message_handler_that_raises_costs_one_message():
    """A route server whose service raises on every message: each message is counted at the edge where the glue
    serves its backlog, and the node keeps forwarding and ticking."""
    wire, loop, a, b, glues = two_nodes()

    def step(n):
        for _ in range(n):
            loop.now += 0.1
            if round(loop.now * 10) % 10 == 0:
                a.housekeeping()
                b.housekeeping()
            wire.pump()
            for g in glues:
                g.tick()
            wire.pump()

    step(30)
    assert glues[1].client.counters["ann_accepted"] >= 1

    def broken(*args, **kw):
        raise RuntimeError("injected")
    glues[0].service.handle = broken          # the fault we inject: the route server's message handler raises
    before = glues[1].client.counters["sent_ann"]
    step(150)                                 # past b's next announcement (every 10 s)
    errors = a.all_counters()["handler_errors"]
    assert errors["route_server.serve:RuntimeError"] >= 1
    assert glues[1].client.counters["sent_ann"] > before           # b still announces (and times out)
    assert a.link_up(a.links[2]) and b.link_up(b.links[3])         # link pings still answered


def test_route_server_tick_that_raises_is_counted_and_the_next_tick_runs():
    wire, loop, a, b, glues = two_nodes()
    calls = [0]
    real = glues[1].client.poll

    def flaky(*args):
        calls[0] += 1
        if calls[0] % 2:
            raise OverflowError("injected")
        return real(*args)
    glues[1].client.poll = flaky
    for _ in range(10):
        loop.now += 0.1
        glues[1].tick()
    assert calls[0] == 10
    assert b.all_counters()["handler_errors"] == {"route_server.tick:OverflowError": 5}


def agent_config(tmp_path):
    from node.cjdns import keys
    ident = keys.Identity.from_seed(b"edge", 0)
    return parse_config({"node": "e", "private_key": ident.private_key.hex(),
                         "control_socket": str(tmp_path / "agent.sock"), "log_file": str(tmp_path / "agent.log"),
                         "tun": {"ifname": "tun0"}, "udp_port": 1, "peers": []})


def test_control_command_that_raises_is_counted_in_the_agents_counters(tmp_path):
    """A real control socket and loop; a command that fails with a bug answers "internal error", the count shows
    in the agent's counters, and the agent goes on answering."""
    agent = Agent(agent_config(tmp_path), EventLoop())
    handlers = agent.handlers()
    handlers["explode"] = lambda req, respond: 1 / 0      # a command with a bug
    server = ControlServer(agent.config.control_socket, agent.loop, handlers, agent.node.errors)
    agent.loop.call_every(0.02, lambda: None)    # wakes the loop to see the stop from the test's thread
    thread = threading.Thread(target=agent.loop.run, daemon=True)
    thread.start()
    try:
        client = AgentClient(agent.config.control_socket)
        for _ in range(3):
            with pytest.raises(AgentError, match="internal error"):
                client.call("explode")
        counters = client.call("counters")
        assert counters["handler_errors"] == {"control.explode:ZeroDivisionError": 3}
        assert counters["loop_errors"] == {}
    finally:
        agent.loop.call_later(0, agent.loop.stop)
        thread.join(5)
        server.close()
        agent.loop.close()


def test_agent_counters_show_handler_and_loop_errors(tmp_path):
    agent = Agent(agent_config(tmp_path), ManualLoop())
    agent.node.errors.record("link_rx", ValueError("x"))
    counters = agent.cmd_counters({}, None)
    assert counters["handler_errors"] == {"link_rx:ValueError": 1} and counters["loop_errors"] == {}
