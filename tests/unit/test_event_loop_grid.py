"""Periodic timers on a grid (node/agent/event_loop.py): the periodic timers of the nodes one agent process hosts
share one wakeup per period, and a late call does not shift the grid or make up the calls it missed. A real
EventLoop on a hand-driven clock (the clock jumps past a timer, so the loop never waits)."""
import pytest

from node.agent.event_loop import EventLoop


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_timers_of_one_period_share_their_wakeups():
    clock = Clock()
    loop = EventLoop(clock)
    first = loop.call_every(1.0, lambda: None)
    clock.now += 0.3
    second = loop.call_every(1.0, lambda: None)          # another node of the same process, started later
    clock.now += 0.4
    third = loop.call_every(0.25, lambda: None)
    assert first.when == second.when == pytest.approx(1001.0)
    assert third.when == pytest.approx(1000.75)


def test_a_late_call_does_not_shift_the_grid_nor_make_up_missed_calls():
    clock = Clock()
    loop = EventLoop(clock)
    calls = []

    def tick():
        calls.append(clock.now)
        loop.stop()
    timer = loop.call_every(1.0, tick)                   # grid points 1001, 1002, ...
    clock.now = timer.when + 3.4                         # the loop stalled 3.4 periods
    loop.run()
    assert calls == [pytest.approx(1004.4)]              # one call, not four
    clock.now = 1005.001                                 # just past the next grid point (not 1004.4 + 1)
    loop.run()
    assert calls == [pytest.approx(1004.4), pytest.approx(1005.001)]
    loop.close()
