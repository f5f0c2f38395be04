"""The one way pktlab waits for something to happen: poll a predicate until it holds or time runs out."""
from __future__ import annotations

import time


class TimedOut(AssertionError):
    """A condition did not hold in time (an AssertionError, so a test that waits fails like an assert)."""


def wait_until(predicate, within: float, what: str | None = None, interval: float = 0.2):
    """Call ``predicate()`` until it returns something true and return that value (it is called at least once, and
    once more at the deadline). When time runs out: with ``what`` (what was awaited, in words) raise TimedOut
    naming it and the last value; without, return the last (false) value, for callers that explain the failure
    in their own terms."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            if what is None:
                return value
            raise TimedOut(f"{what}: not within {within:g} s (last: {value!r})")
        time.sleep(min(interval, left))
