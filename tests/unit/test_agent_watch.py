"""The run monitor's restart policy (issue 13 item 10), step by step with the time passed in."""
from testbed.monitor import AgentWatch

UP = {"dead": False, "stopped": False}
DEAD = {"dead": True, "stopped": False}
STOPPED = {"dead": True, "stopped": True}


def test_a_death_is_reported_once_and_repaired_after_the_grace():
    w = AgentWatch(grace=2.0)
    assert w.tick(0.0, {"a": UP, "b": UP}, True) == ([], [], [])
    assert w.tick(1.0, {"a": DEAD, "b": UP}, True) == (["a"], [], [])
    assert w.tick(2.5, {"a": DEAD, "b": UP}, True) == ([], [], [])            # within the grace: a heal may act
    assert w.tick(3.0, {"a": DEAD, "b": UP}, True) == ([], ["a"], [])
    assert w.tick(4.0, {"a": UP, "b": UP}, True) == ([], [], [])


def test_stopped_on_purpose_or_policy_off_is_left_down():
    w = AgentWatch(grace=1.0)
    assert w.tick(0.0, {"a": STOPPED}, True) == (["a"], [], [])
    assert w.tick(10.0, {"a": STOPPED}, True) == ([], [], [])
    off = AgentWatch(grace=1.0)
    assert off.tick(0.0, {"a": DEAD}, False) == (["a"], [], [])
    assert off.tick(10.0, {"a": DEAD}, False) == ([], [], [])


def test_a_crash_loop_is_given_up_then_watched_again_once_it_runs():
    w = AgentWatch(grace=1.0, limit=3, window=60.0)
    t, restarted = 0.0, 0
    for _ in range(3):
        assert w.tick(t, {"a": DEAD}, True)[0] == ["a"]
        t += 1.0
        assert w.tick(t, {"a": DEAD}, True)[1] == ["a"]
        restarted += 1
        t += 1.0
    assert w.tick(t, {"a": DEAD}, True) == (["a"], [], [])
    assert w.tick(t + 1.0, {"a": DEAD}, True) == ([], [], ["a"])             # the fourth within a minute
    assert w.tick(t + 30.0, {"a": DEAD}, True) == ([], [], [])
    assert w.tick(t + 31.0, {"a": UP}, True) == ([], [], [])                 # someone started it by hand
    assert w.tick(t + 200.0, {"a": DEAD}, True) == (["a"], [], [])
    assert w.tick(t + 201.0, {"a": DEAD}, True) == ([], ["a"], [])           # old restarts left the window
