"""Conformance checks for the RandGen/RandHash vector kinds (merged into vectors.CHECKS).

Each check recomputes the vector's outputs from its inputs and compares the keys listed in `check`. When the C
accelerator is built, every check runs on both the C and the pure-Python path, so a divergence between them
fails the vector as well.
"""
from __future__ import annotations

import hashlib
import re
import struct

from node.conformance import Mismatch, expect

from . import cryptocycle, randhash
from .hashing import expand
from .randgen import RandHashError, TooBig, generate_counted
from .randhash import Program, create_program, mkitem2, program_from_words
from .randhash_ops import OPCODES, OUT_WORDS, execute


def _b2(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def _words_hex(words) -> list[str]:
    return ["%08x" % w for w in words]


def _paths() -> list[bool]:
    return [False, True] if randhash.accel_available() else [False]


def _norm_status(s) -> str:
    return re.sub(r"[^a-z]", "", str(s).lower())        # "TOO_LONG", "too_long", "TooLong" compare equal


def _compare(vector: dict, got: dict, path: str) -> None:
    want = vector["outputs"] if "outputs" in vector else vector     # opcode vectors keep them at the top
    for key in vector.get("check", []):
        if key not in got:
            raise Mismatch(f"[{path}] {key}: not computed ({got.get('status', 'ok')})")
        if key == "status":
            expect(f"[{path}] status", _norm_status(got[key]), _norm_status(want[key]))
        else:
            expect(f"[{path}] {key}", got[key], want[key])


def _status(err: Exception) -> str:
    return "too_big" if isinstance(err, TooBig) else "too_long" if isinstance(err, randhash.TooLong) else "error"


def check_randgen(vector: dict) -> None:
    seed = bytes.fromhex(vector["inputs"]["seed"])
    for accel in _paths():
        path = "C" if accel else "python"
        got: dict = {}
        try:
            prog = create_program(seed, accel=accel)
        except TooBig as e:
            got["status"] = _status(e)
        else:
            got.update(status="ok", program_len=len(prog), program_b2b256=_b2(prog.insn_bytes()),
                       first_8_words=_words_hex(prog.insns[:8]), last_word="%08x" % prog.insns[-1],
                       progbuf_b2b256=_b2(prog.progbuf_bytes()), program_words_le_hex=prog.insn_bytes().hex())
            if not accel:
                got["prng_blocks_used"] = generate_counted(seed)[1]
        _compare(vector, got, path)


def _hand_program(inputs: dict) -> tuple[Program, bytearray]:
    raw = bytes.fromhex(inputs["program_words_le_hex"])
    if len(raw) % 4 or not raw:
        raise Mismatch("program_words_le_hex is not a whole number of words")
    insns = list(struct.unpack("<%dI" % (len(raw) // 4), raw))
    prog = program_from_words(insns, bytes.fromhex(inputs["memory_seed"]))
    state = bytearray(expand(2048, bytes.fromhex(inputs["state_seed"]), 0))
    return prog, state


def check_randhash_program(vector: dict) -> None:
    i = vector["inputs"]
    for accel in _paths():
        prog, state = _hand_program(i)
        got: dict = {}
        try:
            counts = randhash.randhash(prog, int(i["item_no"]), state, int(i["cycles"]), accel=accel)
        except RandHashError as e:
            got["status"] = _status(e)
        else:
            out_at = 256 if int(i["cycles"]) % 2 else 0     # hashOut of the last cycle, in words
            words = struct.unpack("<512I", state)
            got.update(status="ok", state_after_b2b256=_b2(bytes(state)),
                       hash_out_words_0_8_after_last_cycle=_words_hex(words[out_at:out_at + 8]),
                       ops_executed_last_cycle=counts[-1] if counts else 0)
        _compare(vector, got, "C" if accel else "python")


def check_randhash_opcode(vector: dict) -> None:
    insn = int(vector["insn"], 16)
    stack = [0xFFFFFFFF] + [int(w, 16) for w in vector["a_words"]] + [int(w, 16) for w in vector.get("b_words", [])]
    got = {"out_words": _words_hex(execute(insn, stack))}
    _compare(vector, got, "python")
    _compare(vector, {"out_words": single_op_program(insn, stack[1:], accel=False)}, "python compiled")
    if randhash.accel_available():
        # the same op through the C interpreter: LOOP 1 / IN per operand word / op / END, on a crafted state
        _compare(vector, {"out_words": single_op_program(insn, stack[1:], accel=True)}, "C")


def single_op_program(insn: int, operands: list[int], accel: bool) -> list[str]:
    """Run one opcode inside a program (the C interpreter, or compiled Python) and read its words from hashOut."""
    prog = [(1 << 20) | 66] + [(k << 20) | 64 for k in range(len(operands))] + [insn, 70]
    buf = prog + [0] * (2048 - len(prog))
    state = bytearray(2048)
    struct.pack_into("<%dI" % len(operands), state, 0, *operands)
    randhash.randhash(Program(prog, buf), 0, state, 1, accel=accel)
    # END adds the operands then the results into hashOut (zero), starting at word 0
    words = struct.unpack_from("<256I", state, 1024)
    return _words_hex(words[len(operands):len(operands) + OUT_WORDS[OPCODES[insn & 0xFF][1]]])


def check_randhash_mkitem2(vector: dict) -> None:
    i = vector["inputs"]
    item_no = int(i["item_no"], 16) if isinstance(i["item_no"], str) else int(i["item_no"])
    item_seed = bytes.fromhex(i["item_seed"])
    for accel in _paths():
        got: dict = {}
        try:
            prog = create_program(bytes.fromhex(i["prog_seed"]), accel=accel)
            got.update(program_len=len(prog), program_b2b256=_b2(prog.insn_bytes()),
                       memory_window_start_word=item_no % randhash.WINDOW_POSITIONS)
            state = cryptocycle.init(item_seed, item_no)
            got["ops_executed_per_cycle"] = randhash.randhash(prog, item_no, state, 2, accel=accel)
            got.update(state_after_randhash_b2b256=_b2(bytes(state)), state_after_randhash_first32=state[:32].hex())
            item = mkitem2(item_no, item_seed, prog, accel=accel)
        except RandHashError as e:
            got["status"] = _status(e)
        else:
            got.update(status="ok", item_first32=item[:32].hex(), item_b2b256=_b2(item))
        _compare(vector, got, "C" if accel else "python")


CHECKS = {
    "packetcrypt.randgen": check_randgen,
    "packetcrypt.randhash_program": check_randhash_program,
    "packetcrypt.randhash_opcode": check_randhash_opcode,
    "packetcrypt.randhash_mkitem2": check_randhash_mkitem2,
}
