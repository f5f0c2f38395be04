"""RandGen/RandHash failure modes: TOO_BIG, the 20 000-instruction limit, malformed programs, bad arguments,
and the fallback to pure Python when the accelerator is disabled or missing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.chain.packetcrypt import randgen, randhash
from node.chain.packetcrypt.randhash import RandHashError, TooBig, TooLong

PATHS = [False] + ([True] if randhash.accel_available() else [])
ids = lambda a: "C" if a else "python"    # noqa: E731
SEED = bytes(range(32))
REPO = Path(__file__).resolve().parents[2]


def _program(words):
    return randhash.Program(words, words + [0x01234567] * (2048 - len(words)))


def _budget_program(outer_ins):
    """LOOP 1 { IN * outer_ins; LOOP 1999 { IN * 9; END } END }: executes 3 + outer_ins + 1999 * 10 instructions."""
    return _program([(1 << 20) | 66] + [(k << 20) | 64 for k in range(outer_ins)] + [(1999 << 20) | 66]
                    + [(k << 20) | 64 for k in range(9)] + [70, 70])


def test_error_types():
    assert issubclass(TooBig, RandHashError) and issubclass(TooLong, RandHashError)


def test_too_big_python(monkeypatch):
    monkeypatch.setattr(randgen, "MAX_INSNS", 20)      # real programs never reach 2048 (spec §6.10)
    with pytest.raises(TooBig):
        randgen.generate(SEED)
    with pytest.raises(RandHashError):
        randhash.create_program(SEED, accel=False)


def test_program_limit_not_reached_by_default():
    assert 1 <= len(randhash.create_program(SEED, accel=False)) <= 2048


@pytest.mark.parametrize("accel", PATHS, ids=ids)
def test_exactly_max_ops_is_accepted(accel):
    state = bytearray(2048)
    assert randhash.randhash(_budget_program(7), 0, state, 2, accel=accel) == [20000, 20000]


@pytest.mark.parametrize("accel", PATHS, ids=ids)
def test_one_more_op_is_too_long(accel):
    with pytest.raises(TooLong):
        randhash.randhash(_budget_program(8), 0, bytearray(2048), 2, accel=accel)
    with pytest.raises(TooLong):
        randhash.mkitem2(3, SEED, _budget_program(8), accel=accel)


@pytest.mark.parametrize("accel", PATHS, ids=ids)
def test_runaway_nested_loops_abort(accel):
    # 2047^3 iterations if nothing stopped it: the limit must cut it short
    prog = _program([(1 << 20) | 66, (2047 << 20) | 66, (2047 << 20) | 66, (2047 << 20) | 66, 64, 70, 70, 70, 70])
    with pytest.raises(TooLong):
        randhash.randhash(prog, 0, bytearray(2048), 1, accel=accel)


@pytest.mark.parametrize("accel", PATHS, ids=ids)
@pytest.mark.parametrize("words", [
    [(1 << 20) | 66, 0, 70],                          # opcode 0
    [(1 << 20) | 66, 71, 70],                          # opcode 71
    [(1 << 20) | 66, 64, (200 << 9) | 3, 70],         # register past the top of the stack
    [(1 << 20) | 66, 64, 64, (0 << 9) | 51 | (1 << 18), 70],   # 64-bit operand at register 0
    [70],                                              # END at top level
    [(1 << 20) | 66, 64],                              # runs off the end of the program
    [(1 << 20) | 66, (100 << 8) | 69, 70],            # JMP past the end
], ids=["op0", "op71", "reg", "reg0-64", "top-end", "no-end", "jmp"])
def test_malformed_programs_raise(words, accel):
    with pytest.raises(RandHashError):
        randhash.randhash(_program(words), 0, bytearray(2048), 2, accel=accel)


@pytest.mark.parametrize("accel", PATHS, ids=ids)
def test_bad_arguments(accel):
    prog = randhash.create_program(SEED, accel=accel)
    with pytest.raises(ValueError):
        randhash.create_program(b"short", accel=accel)
    with pytest.raises(ValueError):
        randhash.mkitem2(0, b"short", prog, accel=accel)
    with pytest.raises(ValueError):
        randhash.mkitem2(-1, SEED, prog, accel=accel)
    with pytest.raises(ValueError):
        randhash.mkitem2(1 << 64, SEED, prog, accel=accel)
    with pytest.raises(ValueError):
        randhash.randhash(prog, 0, bytearray(100), accel=accel)
    with pytest.raises(ValueError):
        randhash.randhash(prog, 0, bytearray(2048), 5, accel=accel)
    with pytest.raises(ValueError):
        randhash.randhash(prog, 0, bytes(2048), accel=accel)          # must be writable
    with pytest.raises(RandHashError):
        randhash.Program([], [0] * 2048)
    with pytest.raises(RandHashError):
        randhash.Program([66], [0] * 10)
    with pytest.raises(RandHashError):
        randhash.Program([1 << 32], [0] * 2048)


def _run_python(code, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


ITEM_CODE = """
from node.chain.packetcrypt import randhash
p = randhash.create_program(bytes(range(32)))
print(randhash.accel_available(), randhash.mkitem2(7, bytes(32), p).hex()[:32])
"""


def test_env_disables_accelerator():
    default = _run_python(ITEM_CODE)
    disabled = _run_python(ITEM_CODE, {"PKTLAB_NO_ACCEL": "1"})
    assert disabled.startswith("False ")
    assert default.split()[1] == disabled.split()[1]


def test_missing_extension_falls_back():
    blocker = ("import sys, importlib.abc\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path, target=None):\n"
               "        if name.endswith('_randhash_accel'): raise ImportError('hidden')\n"
               "sys.meta_path.insert(0, Block())\n")
    out = _run_python(blocker + ITEM_CODE)
    assert out.startswith("False ")
    assert out.split()[1] == _run_python(ITEM_CODE).split()[1]


def test_asking_for_missing_accelerator_is_an_error(monkeypatch):
    monkeypatch.setattr(randhash, "_accel", None)
    assert not randhash.accel_available()
    with pytest.raises(RandHashError):
        randhash.create_program(SEED, accel=True)
    assert len(randhash.create_program(SEED)) >= 1        # the default quietly uses Python


def test_deep_nesting_is_a_clean_error_in_python():
    # 1020 nested one-iteration loops: deeper than Python's default recursion limit (C handles it)
    depth = 1020
    prog = _program([(1 << 20) | 66] * depth + [64] + [70] * depth)
    with pytest.raises(RandHashError):
        randhash.randhash(prog, 0, bytearray(2048), 1, accel=False)
