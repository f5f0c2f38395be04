"""The run monitor samples the agents' counters only when something will read them (testbed/monitor.py)."""
import json
import os
import time

from testbed.monitor import WANT_FILE, WANT_TTL_S, counters_wanted, want_counters


def run_dir(tmp_path, **state):
    (tmp_path / "state.json").write_text(json.dumps(dict({"name": "r", "status": "ready"}, **state)))
    return tmp_path


def test_a_run_built_with_counters_is_sampled_all_along(tmp_path):
    now = time.time()
    assert counters_wanted(run_dir(tmp_path, sample_counters=True), now)
    assert counters_wanted(run_dir(tmp_path), now)            # a run from before the flag: as it was


def test_without_them_only_while_a_reader_touched_the_want_file_lately(tmp_path):
    d = run_dir(tmp_path, sample_counters=False)
    now = time.time()
    assert not counters_wanted(d, now)
    want_counters(d)
    assert counters_wanted(d, time.time())
    old = now - WANT_TTL_S - 1                                  # the reader went away
    os.utime(d / WANT_FILE, (old, old))
    assert not counters_wanted(d, now)


def test_an_unreadable_state_file_keeps_sampling(tmp_path):
    (tmp_path / "state.json").write_text("{half")
    assert counters_wanted(tmp_path, time.time())
