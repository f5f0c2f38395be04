"""The fuzz harnesses' budget and bookkeeping (tests/unit/test_fuzz_*.py).

A harness drives a parser and the code behind it (a session, a switch, a route server, a lease device, the
control API) with one hypothesis-drawn input per call and asserts what must hold for any input: only the
documented error types, state unchanged on rejection, counters consistent.

``@harness(strategy)`` turns such a function into a pytest test with two budgets: the CI one (``ci`` inputs,
a few seconds, the same inputs on every run so CI is repeatable) and ``-m slow`` (SLOW_INPUTS each, new random
inputs on every run). Inputs and crashes are counted per harness; with
``PKTLAB_FUZZ_STATS=FILE`` each run appends ``{"harness", "budget", "inputs", "crashes", "seconds"}`` as a JSON
line, from which the README's reliability table is made::

    PKTLAB_FUZZ_STATS=/tmp/fuzz.jsonl python -m pytest -m slow tests/unit/test_fuzz_*.py
"""
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings

SLOW_INPUTS = 100_000


def harness(strategy, ci: int = 200):
    def decorate(check):
        @pytest.mark.parametrize("budget", [pytest.param(ci, id="ci"),
                                            pytest.param(SLOW_INPUTS, id="slow", marks=pytest.mark.slow)])
        def test(budget):
            stats = {"inputs": 0}

            @settings(max_examples=budget, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=budget != SLOW_INPUTS)
            @given(strategy)
            def run(value):
                stats["inputs"] += 1
                check(value)

            started = time.monotonic()
            crashes = 0
            try:
                run()
            except BaseException as e:
                crashes = len(getattr(e, "exceptions", ())) or 1      # hypothesis reports each distinct bug
                raise
            finally:
                _record(check.__name__, budget, stats["inputs"], crashes, time.monotonic() - started)

        test.__name__ = test.__qualname__ = check.__name__
        test.__doc__ = check.__doc__
        test.__module__ = check.__module__
        return test
    return decorate


def _record(name, budget, inputs, crashes, seconds):
    path = os.environ.get("PKTLAB_FUZZ_STATS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"harness": name, "budget": budget, "inputs": inputs, "crashes": crashes,
                                "seconds": round(seconds, 1)}) + "\n")
