"""A small single-threaded event loop: epoll readiness callbacks plus a timer heap.

The data plane runs every packet through here, so it stays minimal: one callback per file descriptor (bound
methods, no per-event allocation beyond what selectors does) and a heap of (when, seq, fn, args) timers.
"""

import heapq
import itertools
import logging
import selectors
import time

log = logging.getLogger(__name__)


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
        self._seq = itertools.count()
        self._running = False

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
        timer = Timer(when, fn, args)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay, fn, *args):
        return self.call_at(self.clock() + delay, fn, *args)

    def call_every(self, period, fn):
        """Call fn() every period seconds until the loop stops."""
        def tick():
            fn()
            self.call_later(period, tick)
        return self.call_later(period, tick)

    # -- running ----------------------------------------------------------------------------------------------
    def stop(self):
        self._running = False

    def run(self):
        self._running = True
        select = self.selector.select
        timers = self._timers
        clock = self.clock
        while self._running:
            timeout = None
            if timers:
                timeout = max(0.0, timers[0][0] - clock())
            try:
                for key, _ in select(timeout):
                    key.data()
                if timers:
                    now = clock()
                    while timers and timers[0][0] <= now:
                        timer = heapq.heappop(timers)[2]
                        if not timer.cancelled:
                            timer.fn(*timer.args)
            except Exception:
                # A bug in one handler must not stop forwarding: log it and keep going.
                log.exception("unexpected error in event loop callback")

    def close(self):
        self.selector.close()
