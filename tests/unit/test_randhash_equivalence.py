"""The C accelerator, the compiled Python path and the reference interpreter agree on random inputs."""
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.chain.packetcrypt import cryptocycle, randgen, randhash
from node.chain.packetcrypt.randhash_interp import run_cycles
from node.chain.packetcrypt.randhash_ops import OPCODES, execute
from node.chain.packetcrypt.randhash_vectors import single_op_program

needs_accel = pytest.mark.skipif(not randhash.accel_available(), reason="C accelerator not built")
SEEDS = [random.Random(k).randbytes(32) for k in range(12)]


def _reference(prog, item_no, state):
    words = list(struct.unpack("<512I", state))
    counts = run_cycles(prog.insns, prog.memory(item_no), words, 2)
    return counts, struct.pack("<512I", *words)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s[:4].hex())
def test_compiled_python_equals_reference_interpreter(seed):
    prog = randhash.create_program(seed, accel=False)
    assert prog.compiled() is not None                 # generated programs always compile
    rng = random.Random(seed)
    for item_no in (0, rng.randrange(1792), rng.randrange(8192), rng.randrange(1 << 64)):
        state = cryptocycle.init(seed[::-1], item_no)
        want_counts, want_state = _reference(prog, item_no, state)
        counts = randhash.randhash(prog, item_no, state, 2, accel=False)
        assert counts == want_counts
        assert bytes(state) == want_state


@needs_accel
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s[:4].hex())
def test_c_equals_python(seed):
    py = randhash.create_program(seed, accel=False)
    c = randhash.create_program(seed, accel=True)
    assert c.insns == py.insns == randgen.generate(seed)
    assert c.progbuf == py.progbuf
    rng = random.Random(seed)
    item_seed = rng.randbytes(32)
    for item_no in (0, 1791, 1792, rng.randrange(8192), rng.randrange(1 << 64)):
        s_py, s_c = cryptocycle.init(item_seed, item_no), cryptocycle.init(item_seed, item_no)
        assert randhash.randhash(py, item_no, s_py, 2, accel=False) == randhash.randhash(c, item_no, s_c, 2, accel=True)
        assert s_py == s_c
        assert randhash.mkitem2(item_no, item_seed, py, accel=False) == randhash.mkitem2(item_no, item_seed, c, accel=True)


@needs_accel
@pytest.mark.parametrize("cycles", [0, 1, 3, 4])
def test_other_cycle_counts_c_equals_python(cycles):
    prog = randhash.create_program(SEEDS[0])
    state = cryptocycle.init(SEEDS[1], 77)
    s_py, s_c = bytearray(state), bytearray(state)
    counts = randhash.randhash(prog, 77, s_py, cycles, accel=False)
    assert len(counts) == cycles
    assert randhash.randhash(prog, 77, s_c, cycles, accel=True) == counts
    assert s_py == s_c


@needs_accel
@settings(max_examples=15, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), item_seed=st.binary(min_size=32, max_size=32),
       item_no=st.integers(0, (1 << 64) - 1))
def test_c_equals_python_hypothesis(seed, item_seed, item_no):
    prog = randhash.create_program(seed, accel=False)
    assert randhash.create_program(seed, accel=True).insns == prog.insns
    assert randhash.mkitem2(item_no, item_seed, prog, accel=True) == \
        randhash.mkitem2(item_no, item_seed, prog, accel=False)


@needs_accel
def test_build_table_c_equals_python_prefix():
    rng = random.Random(99)
    ps, its = rng.randbytes(32), rng.randbytes(32)
    table = randhash.build_table(ps, its, 24, accel=True)
    assert len(table) == 24 and all(len(item) == 1024 for item in table)
    assert table == randhash.build_table(ps, its, 24, accel=False)


def _single_op_insn(op, imm, pattern, field):
    cls = OPCODES[op][1]
    wide = cls in ("4_2", "4_4")
    ra, rb = (2, 4) if wide else (1, 2)
    insn = op | (ra << 9)
    if cls != "1_1":
        insn |= ((1 << 18) | (pattern << 19) | (field << 20)) if imm else (rb << 20)
    n_a = 2 if wide else 1
    n_b = 0 if cls == "1_1" or imm else n_a
    return insn, n_a + n_b


@needs_accel
@settings(max_examples=400, deadline=None)
@given(op=st.integers(1, 63), imm=st.booleans(), pattern=st.integers(0, 1), field=st.integers(0, 4095),
       words=st.lists(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
                      | st.integers(0, 0xFFFFFFFF), min_size=4, max_size=4))
def test_single_opcode_c_equals_python(op, imm, pattern, field, words):
    insn, n = _single_op_insn(op, imm, pattern, field)
    operands = words[:n]
    want = ["%08x" % w for w in execute(insn, [0xFFFFFFFF] + operands)]
    assert single_op_program(insn, operands, accel=True) == want


@settings(max_examples=400, deadline=None)
@given(op=st.integers(1, 63), imm=st.booleans(), pattern=st.integers(0, 1), field=st.integers(0, 4095),
       words=st.lists(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
                      | st.integers(0, 0xFFFFFFFF), min_size=4, max_size=4))
def test_single_opcode_compiled_python_equals_reference_ops(op, imm, pattern, field, words):
    insn, n = _single_op_insn(op, imm, pattern, field)
    operands = words[:n]
    want = ["%08x" % w for w in execute(insn, [0xFFFFFFFF] + operands)]
    assert single_op_program(insn, operands, accel=False) == want


# A hand-written program whose IF arms continue at different places (so it does not compile): the THEN arm
# is followed by more of the loop body, the ELSE arm's scope runs into a JMP that skips one END.
UNSTRUCTURED = [(1 << 20) | 66, 64, (2 << 20) | 66, (1 << 20) | 64, (2 << 20) | (3 << 9) | 68, (3 << 8) | 69,
                (2 << 20) | 64, 70, (3 << 20) | 64, (4 << 20) | 64, 70, (1 << 8) | 69, 70, 70]


@pytest.mark.parametrize("k", range(6))
def test_hand_written_program_that_does_not_compile(k):
    prog = randhash.Program(UNSTRUCTURED, UNSTRUCTURED + list(range(2048 - len(UNSTRUCTURED))))
    assert prog.compiled() is None
    state = bytearray(random.Random(k).randbytes(2048))
    want_counts, want_state = _reference(prog, 0, state)
    s_py = bytearray(state)
    assert randhash.randhash(prog, 0, s_py, 2, accel=False) == want_counts
    assert bytes(s_py) == want_state
    if randhash.accel_available():
        s_c = bytearray(state)
        assert randhash.randhash(prog, 0, s_c, 2, accel=True) == want_counts
        assert bytes(s_c) == want_state


@needs_accel
@pytest.mark.slow
def test_full_table_c_equals_python():
    rng = random.Random(2024)
    ps, its = rng.randbytes(32), rng.randbytes(32)
    assert randhash.build_table(ps, its, accel=True) == randhash.build_table(ps, its, accel=False)
