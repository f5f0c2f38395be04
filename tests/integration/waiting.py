"""wait_for: poll until a condition holds, returning what it returned (testbed.faults.wait_until only says whether)."""
import time


def wait_for(fn, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last!r})")
