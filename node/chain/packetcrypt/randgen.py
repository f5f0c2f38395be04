"""RandGen: the PacketCrypt random program generator (randhash.md §6; C `RandGen.c`, Go `randgen.go`).

A 32-byte seed drives a ChaCha20-based PRNG that writes one outer LOOP whose body nests random arithmetic,
IN reads, IF constructs and further loops, within a cost budget. Every random draw is consensus: the order
of draws below follows the spec exactly (including draws whose result is unused).
"""
from __future__ import annotations

import struct

from .hashing import expand

INITIAL_BUDGET = 20000
MAX_INSNS = 2048
MEMORY_COST = 20
INPUT_COST = 2
BRANCH_COST = 50
LOOP_MIN_CYCLES = 2
MARK = 0xFFFFFFFF
_M32 = 0xFFFFFFFF

OP_IN, OP_MEMORY, OP_LOOP, OP_IF_LIKELY, OP_IF_RANDOM, OP_JMP, OP_END = 64, 65, 66, 67, 68, 69, 70

# op class -> (first opcode, opcode count, cost, 64-bit operands, result words)
CLASS_1_1 = (1, 11, 1, False, 1)
CLASS_2_1 = (12, 24, 2, False, 1)
CLASS_2_2 = (36, 15, 4, False, 2)
CLASS_4_2 = (51, 8, 8, True, 2)
CLASS_4_4 = (59, 5, 16, True, 4)

_BLOCK = struct.Struct("<16I")


class RandHashError(Exception):
    """A program cannot be generated (TOO_BIG) or executed (TOO_LONG, invalid instruction)."""


class TooBig(RandHashError):
    """RandGen would emit more than MAX_INSNS instructions."""


class _Cell:
    """A budget passed by reference: callees spend from their caller's budget."""
    __slots__ = ("value",)

    def __init__(self, value: int):
        self.value = value

    def spend(self, amount: int) -> bool:
        if self.value >= amount:
            self.value -= amount
            return True
        return False


class _Generator:
    def __init__(self, seed32: bytes):
        if len(seed32) != 32:
            raise ValueError("RandGen seed must be 32 bytes")
        self.seed = bytes(seed32)
        self.block: tuple = ()
        self.next = 16
        self.ctr = 0
        self.insns: list[int] = []
        self.vars: list[int] = []
        self.depth = 0
        self.too_big = False

    # --- PRNG ---------------------------------------------------------------------------------------
    def rand(self) -> int:
        if self.next >= 16:
            self.block = _BLOCK.unpack(expand(64, self.seed, self.ctr))
            self.ctr += 1
            self.next = 0
        r = self.block[self.next]
        self.next += 1
        return r

    def coin(self, n: int) -> bool:
        return self.rand() % n == 0

    def rand_range(self, lo: int, hi: int) -> int:
        return self.rand() % (hi - lo) + lo

    # --- program and variable stack -----------------------------------------------------------------
    def emit(self, insn: int) -> None:
        if len(self.insns) >= MAX_INSNS:
            self.too_big = True
        else:
            self.insns.append(insn & _M32)

    def open_scope(self) -> None:
        self.depth += 1
        self.vars.append(MARK)

    def close_scope(self) -> None:
        self.emit(OP_END)
        self.depth -= 1
        v = self.vars
        while v.pop() != MARK:      # generator entries are 0, 1 or MARK, so searching is safe here
            pass

    def pick_var(self, dbl: bool) -> int:
        v = self.vars
        need = 2 if dbl else 1
        eof = len(v)
        bof = eof - 1
        while bof >= 0:             # walk frames from the innermost outwards
            if v[bof] == MARK:
                if eof - bof - 1 >= need:
                    if bof == 0 or not self.coin(4):
                        break
                eof = bof
            bof -= 1
        j = self.rand_range(bof + 1, eof) + 1
        while True:
            if j >= eof:
                j = bof + 1
            if (not dbl or j > bof + 1) and self.coin(8):
                break               # reuse, even if already used
            if not v[j] & 1 and (not dbl or not v[j - 1] & 1):
                break
            j += 1
        v[j] |= 1
        if dbl:
            v[j - 1] |= 1
        return j

    def operand_a(self, dbl: bool) -> int:
        return self.pick_var(dbl) << 9

    def operand_b(self, dbl: bool) -> int:
        if self.coin(4):
            return ((self.rand() << 20) | (1 << 18)) & _M32
        return self.pick_var(dbl) << 20

    # --- constructs ---------------------------------------------------------------------------------
    def gen_op(self, cls: tuple, cell: _Cell) -> bool:
        first, count, cost, dbl, outs = cls
        r = self.rand()             # drawn before the budget check
        if not cell.spend(cost):
            return False
        insn = first + r % count
        insn |= self.operand_a(dbl)  # A first, then B: both consume randomness
        if cls is not CLASS_1_1:
            insn |= self.operand_b(dbl)
        self.emit(insn)
        self.vars.extend([0] * outs)
        return True

    def gen_input(self, cell: _Cell) -> bool:
        if not cell.spend(INPUT_COST):
            return False
        self.vars.append(0)
        self.emit((self.rand() << 8) | OP_IN)
        return True

    def gen_branch(self, cell: _Cell) -> bool:
        if not cell.spend(BRANCH_COST):
            return False
        opc = OP_IF_RANDOM if self.coin(2) else OP_IF_LIKELY
        self.emit(self.operand_a(False) | opc | (2 << 20))
        j1 = len(self.insns)
        self.emit(OP_JMP)
        self.gen_body(_Cell(cell.value * 7 // 32), True)
        j2 = len(self.insns)
        self.emit(OP_JMP)
        self.gen_body(_Cell(cell.value * 7 // 32), True)
        # patch the placeholders (they may be missing once the program overflowed; it is discarded then)
        if j1 < len(self.insns):
            self.insns[j1] = (((j2 - j1) << 8) | OP_JMP) & _M32
        if j2 < len(self.insns):
            self.insns[j2] = (((len(self.insns) - j2 - 1) << 8) | OP_JMP) & _M32
        return True

    def gen_loop(self, cell: _Cell) -> None:
        count = self.rand_range(LOOP_MIN_CYCLES, 7 + 29 * self.depth)
        n_mem = self.rand_range(2, 4)
        if cell.value < MEMORY_COST * count:
            return
        cell.value //= count
        self.emit((count << 20) | OP_LOOP)
        self.open_scope()
        tmpl = ((self.rand() << 8) | OP_MEMORY) & _M32
        for _ in range(n_mem):
            if not cell.spend(MEMORY_COST):
                break
            self.vars.append(0)
            c = self.rand()
            self.emit((tmpl & ~(0xF << 9)) | ((c & 0xF) << 9))
        self.gen_body(cell, False)
        self.close_scope()

    def gen_body(self, cell: _Cell, new_scope: bool) -> None:
        if new_scope:
            self.open_scope()
        self._body(cell)
        if new_scope:
            self.close_scope()

    def _body(self, cell: _Cell) -> None:
        coin = self.coin
        while len(self.insns) <= MAX_INSNS:
            m = self.rand_range(2, 12)
            for i in range(1, m + 1):
                if coin(4 * m // i) and self.gen_op(CLASS_4_4, cell):
                    continue
                if coin(3 * m // i) and self.gen_op(CLASS_4_2, cell):
                    continue
                if coin(3 * m // i) and self.gen_op(CLASS_2_2, cell):
                    continue
                if coin(2 * m // i) and self.gen_op(CLASS_2_1, cell):
                    continue
                if coin(i) and self.gen_input(cell):
                    continue
                if self.gen_op(CLASS_1_1, cell):
                    continue
                return              # nothing affordable any more
            r = self.rand()
            if (r % 64) + (len(self.insns) * 25 // 2048) < 50:
                if not self.gen_branch(cell):
                    return
            r = self.rand()
            if r % 32 < 23:
                self.gen_loop(cell)
                return


def generate_counted(seed32: bytes) -> tuple[list[int], int]:
    """(program, number of 64-byte PRNG blocks drawn); raises TooBig past 2048 instructions."""
    g = _Generator(seed32)
    g.gen_loop(_Cell(INITIAL_BUDGET))
    if g.too_big:
        raise TooBig("RandGen: program exceeds %d instructions" % MAX_INSNS)
    return g.insns, g.ctr


def generate(seed32: bytes) -> list[int]:
    """The program (list of u32 instructions) for a 32-byte seed; raises TooBig past 2048 instructions."""
    return generate_counted(seed32)[0]
