"""A small single-threaded event loop: epoll readiness callbacks plus a timer heap.

The data plane runs every packet through here, so it stays minimal: one callback per file descriptor (bound
methods, no per-event allocation beyond what selectors does) and a heap of (when, seq, fn, args) timers.
Periodic timers of one period fall on one grid, so the nodes an agent process hosts wake it together.

Each callback runs behind the edge (node/agent/handler_errors.py): one that raises is counted in ``errors`` by its
name and exception type, logged once, and the loop goes on with the next; a periodic timer is rescheduled before
it runs, so one that raises keeps its period. A timer far in the future never makes the loop wait longer than
MAX_WAIT_S at a time (epoll refuses huge timeouts).
"""

import heapq
import itertools
import logging
import math
import selectors
import time

from node.agent.handler_errors import HandlerErrors

log = logging.getLogger(__name__)

MAX_WAIT_S = 3600.0


class Timer:
    """Handle returned by call_at/call_later; cancel() makes it a no-op."""

    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when, fn, args):
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class EventLoop:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.selector = selectors.DefaultSelector()
        self._timers = []
        self._origin = clock()       # where the periodic timers' grid starts (call_every)
        self._seq = itertools.count()
        self._running = False
        self.errors = HandlerErrors(log)

    # -- file descriptors -------------------------------------------------------------------------------------
    def add_reader(self, fileobj, callback):
        """callback() is called whenever fileobj is readable."""
        self.selector.register(fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj):
        try:
            self.selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    # -- timers -----------------------------------------------------------------------------------------------
    def call_at(self, when, fn, *args):
        if when != when:
            raise ValueError("a timer at NaN would block every timer after it")
        timer = Timer(when, fn, args)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay, fn, *args):
        return self.call_at(self.clock() + delay, fn, *args)

    def call_every(self, period, fn):
        """Call fn() every period seconds until the loop stops (also when a call raises).

        The calls fall on a grid of the period counted from the loop's start, so the periodic timers of all the
        nodes one process hosts share one wakeup per period instead of one each (an idle agent host spends
        most of its time waking up); a late call does not shift the grid, and calls missed while the loop stalled are not made
        up (the next is the next grid point)."""
        def tick(n):
            n = max(n + 1, self._grid_step(period))
            self.call_at(self._origin + n * period, tick, n)
            fn()
        tick.__qualname__ = getattr(fn, "__qualname__", "periodic")
        n = self._grid_step(period)
        return self.call_at(self._origin + n * period, tick, n)

    def _grid_step(self, period):
        """The number of the first grid point of this period after now."""
        return math.floor((self.clock() - self._origin) / period) + 1

    # -- running ----------------------------------------------------------------------------------------------
    def stop(self):
        self._running = False

    def run(self):
        self._running = True
        select = self.selector.select
        timers = self._timers
        clock = self.clock
        record = self.errors.record
        while self._running:
            timeout = MAX_WAIT_S
            if timers:
                timeout = min(max(0.0, timers[0][0] - clock()), MAX_WAIT_S)
            try:
                ready = select(timeout)
            except Exception as e:
                record("event_loop.select", e)
                ready = ()
            for key, _ in ready:
                try:
                    key.data()
                except Exception as e:
                    record(_name(key.data), e)
            if timers:
                now = clock()
                while timers and timers[0][0] <= now:
                    timer = heapq.heappop(timers)[2]
                    if not timer.cancelled:
                        try:
                            timer.fn(*timer.args)
                        except Exception as e:
                            record(_name(timer.fn), e)

    def close(self):
        self.selector.close()


def _name(fn) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)
