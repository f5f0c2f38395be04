"""RandHash programs and announcement-table items (randhash.md §2, §7; C `Announce_createProg/_mkitem2`).

    prog = create_program(seed32)            # RandGen + the 8192-byte memory buffer it overwrites
    item = mkitem2(item_no, item_seed32, prog)  # 1024 bytes: CryptoCycle init, 2 RandHash cycles, crypt
    table = build_table(prog_seed32, item_seed32)

Two implementations give identical results: the compiled C accelerator (node/chain/packetcrypt/accel, built by
cffi at install time) and pure Python (randhash_compile.py, with randhash_interp.py as the general fallback).
The accelerator is used when its extension module imports, unless the environment sets PKTLAB_NO_ACCEL=1.
"""
from __future__ import annotations

import os
import struct

from . import cryptocycle
from .hashing import expand
from .randgen import RandHashError, TooBig, generate
from .randhash_compile import Unstructured, compile_program
from .randhash_interp import MAX_OPS, TooLong, run_cycles

__all__ = ["Program", "RandHashError", "TooBig", "TooLong", "create_program", "mkitem2", "build_table",
           "randhash", "accel_available", "MAX_OPS", "PROGBUF_WORDS", "MEMORY_WORDS", "WINDOW_POSITIONS"]

PROGBUF_WORDS = 2048
MEMORY_WORDS = 256
WINDOW_POSITIONS = PROGBUF_WORDS - MEMORY_WORDS     # 1792
TABLE_ITEMS = 8192
MAX_CYCLES = 4
_STATE = struct.Struct("<512I")


def _load_accel():
    if os.environ.get("PKTLAB_NO_ACCEL") == "1":
        return None
    try:
        from . import _randhash_accel
    except ImportError:
        return None
    if _randhash_accel.lib.pk_init() != 0:     # libsodium could not initialise: stay in Python
        return None
    return _randhash_accel


_accel = _load_accel()


def accel_available() -> bool:
    return _accel is not None


def _use_accel(accel: bool | None) -> bool:
    """accel=None: the default (C when built and not disabled); False: pure Python; True: C or an error."""
    if accel is None:
        return _accel is not None
    if accel and _accel is None:
        raise RandHashError("the RandHash accelerator is not available")
    return accel


class Program:
    """A generated program and the 2048-word buffer (program over expand(8192, seed, 0)) its memory comes from.

    Treat it as immutable: the compiled forms (Python and C buffers) are cached on first use."""

    def __init__(self, insns: list[int], progbuf: list[int], seed32: bytes | None = None):
        if not 1 <= len(insns) <= PROGBUF_WORDS or len(progbuf) != PROGBUF_WORDS:
            raise RandHashError("RandHash: bad program or buffer size")
        if not all(0 <= w <= 0xFFFFFFFF for w in insns) or not all(0 <= w <= 0xFFFFFFFF for w in progbuf):
            raise RandHashError("RandHash: program and buffer words must be u32")
        self.insns = list(insns)
        self.progbuf = list(progbuf)
        self.seed = seed32
        self.accel_bufs = None      # the C accelerator's copies of insns and progbuf, made on first use
        self._compiled = None      # False once the compiler refused the program

    def __len__(self) -> int:
        return len(self.insns)

    def memory(self, item_no: int) -> list[int]:
        start = item_no % WINDOW_POSITIONS
        return self.progbuf[start:start + MEMORY_WORDS]

    def insn_bytes(self) -> bytes:
        return struct.pack("<%dI" % len(self.insns), *self.insns)

    def progbuf_bytes(self) -> bytes:
        return struct.pack("<%dI" % PROGBUF_WORDS, *self.progbuf)

    def compiled(self):
        """The program compiled to Python, or None when its control flow needs the reference interpreter."""
        if self._compiled is None:
            try:
                self._compiled = compile_program(self.insns)
            except Unstructured:
                self._compiled = False
        return self._compiled or None


def program_from_words(insns: list[int], memory_seed32: bytes) -> Program:
    """A hand-written program laid over expand(8192, memory_seed32, 0), as createProg does for generated ones."""
    buf = list(struct.unpack("<%dI" % PROGBUF_WORDS, expand(4 * PROGBUF_WORDS, memory_seed32, 0)))
    buf[:len(insns)] = insns
    return Program(insns, buf)


def create_program(seed32: bytes, accel: bool | None = None) -> Program:
    """C Announce_createProg: RandGen(seed) written over expand(8192, seed, 0). Raises TooBig (a RandHashError)."""
    seed32 = bytes(seed32)
    if len(seed32) != 32:
        raise ValueError("program seed must be 32 bytes")
    if _use_accel(accel):
        return _accel_create_program(seed32)
    prog = program_from_words(generate(seed32), seed32)
    prog.seed = seed32
    return prog


def randhash(program: Program, item_no: int, state: bytearray, cycles: int = 2,
             accel: bool | None = None) -> list[int]:
    """Run `cycles` RandHash cycles on the 2048-byte state in place; returns the instructions executed per cycle.

    Raises TooLong when a cycle executes more than MAX_OPS instructions (the state is then meaningless)."""
    if not isinstance(state, bytearray) or len(state) != 2048:
        raise ValueError("RandHash state must be a bytearray of 2048 bytes (it is updated in place)")
    if item_no < 0 or item_no >= 1 << 64:
        raise ValueError("item_no must be a u64")
    if not 0 <= cycles <= MAX_CYCLES:
        raise ValueError("cycles must be 0..%d (mkitem2 uses 2, legacy v0 items 4)" % MAX_CYCLES)
    if _use_accel(accel):
        return _accel_randhash(program, item_no, state, cycles)
    words = list(_STATE.unpack(state))
    mem = program.memory(item_no)
    code = program.compiled()
    if code is not None:
        counts = code(mem, words, cycles)
    else:
        counts = run_cycles(program.insns, mem, words, cycles)
    _STATE.pack_into(state, 0, *words)
    return counts


def mkitem2(item_no: int, item_seed32: bytes, program: Program, accel: bool | None = None) -> bytes:
    """One 1024-byte announcement-table item (C Announce_mkitem2). Raises TooLong (a RandHashError)."""
    if item_no < 0 or item_no >= 1 << 64:
        raise ValueError("item_no must be a u64")
    item_seed32 = bytes(item_seed32)
    if len(item_seed32) != 32:
        raise ValueError("item seed must be 32 bytes")
    if _use_accel(accel):
        return _accel_mkitem2(item_no, item_seed32, program)
    s = cryptocycle.init(item_seed32, item_no)
    randhash(program, item_no, s, 2, accel=False)
    cryptocycle.make_fuzzable(s)
    cryptocycle.crypt(s)
    return bytes(s[:1024])


def build_table(prog_seed32: bytes, item_seed32: bytes, count: int = TABLE_ITEMS,
                accel: bool | None = None) -> list[bytes]:
    """Items 0..count-1 of an announcement table. Raises TooBig/TooLong (RandHashError) like the C miner."""
    if not 0 <= count < 1 << 32:
        raise ValueError("table size out of range")
    if len(prog_seed32) != 32 or len(item_seed32) != 32:
        raise ValueError("table seeds must be 32 bytes")
    if _use_accel(accel):
        return _accel_build_table(bytes(prog_seed32), bytes(item_seed32), count)
    prog = create_program(prog_seed32, accel=False)
    return [mkitem2(i, item_seed32, prog, accel=False) for i in range(count)]


# --- accelerator glue (node/chain/packetcrypt/accel/*.c) ---------------------------------------------------
def _accel_error(rc: int) -> RandHashError:
    if rc == -1:
        return TooBig("RandGen: program exceeds 2048 instructions")
    if rc == -3:
        return TooLong("RandHash: more than %d instructions in one cycle" % MAX_OPS)
    if rc == -2:
        return RandHashError("RandHash: invalid program")
    return RandHashError("RandHash accelerator error %d" % rc)


def _accel_create_program(seed32: bytes) -> Program:
    ffi, lib = _accel.ffi, _accel.lib
    insns = ffi.new("uint32_t[2048]")
    progbuf = ffi.new("uint32_t[2048]")
    n = lib.pk_create_prog(seed32, progbuf, insns)
    if n < 0:
        raise _accel_error(n)
    return Program(list(insns[0:n]), list(progbuf), seed32)


def _accel_prog_buffers(program: Program):
    if program.accel_bufs is None:
        ffi = _accel.ffi
        program.accel_bufs = (ffi.new("uint32_t[]", program.insns), ffi.new("uint32_t[]", program.progbuf))
    return program.accel_bufs


def _accel_randhash(program: Program, item_no: int, state: bytearray, cycles: int) -> list[int]:
    ffi, lib = _accel.ffi, _accel.lib
    insns, progbuf = _accel_prog_buffers(program)
    counts = ffi.new("int32_t[]", max(cycles, 1))
    buf = ffi.from_buffer(state)
    rc = lib.pk_randhash(insns, len(program.insns), progbuf, item_no, buf, cycles, counts)
    if rc < 0:
        raise _accel_error(rc)
    return list(counts[0:cycles])


def _accel_mkitem2(item_no: int, item_seed32: bytes, program: Program) -> bytes:
    ffi, lib = _accel.ffi, _accel.lib
    insns, progbuf = _accel_prog_buffers(program)
    out = bytearray(1024)
    rc = lib.pk_mkitem2(insns, len(program.insns), progbuf, item_no, item_seed32, ffi.from_buffer(out))
    if rc < 0:
        raise _accel_error(rc)
    return bytes(out)


def _accel_build_table(prog_seed32: bytes, item_seed32: bytes, count: int) -> list[bytes]:
    ffi, lib = _accel.ffi, _accel.lib
    out = bytearray(1024 * count)
    rc = lib.pk_build_table(prog_seed32, item_seed32, count, ffi.from_buffer(out))
    if rc < 0:
        raise _accel_error(rc)
    mv = bytes(out)
    return [mv[i * 1024:(i + 1) * 1024] for i in range(count)]
