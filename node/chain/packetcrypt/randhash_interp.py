"""The RandHash reference interpreter: a direct transcription of randhash.md §7 (one recursive `run` per scope).

It handles any program, including hand-written ones whose control flow the compiler (randhash_compile.py)
refuses, and serves as the yardstick the faster paths are tested against.
"""
from __future__ import annotations

from .randgen import RandHashError
from .randhash_ops import OPCODES, imm32, operands, reg_a, sx

MAX_OPS = 20000
MARK = 0xFFFFFFFF
M32 = 0xFFFFFFFF
OP_IN, OP_MEMORY, OP_LOOP, OP_IF_LIKELY, OP_IF_RANDOM, OP_JMP, OP_END = 64, 65, 66, 67, 68, 69, 70


class TooLong(RandHashError):
    """A RandHash cycle executed more than MAX_OPS instructions."""


class _Abort(Exception):
    """Unwinds every active scope once the op limit is passed."""


class _Machine:
    def __init__(self, prog, mem, hin, hout):
        self.prog, self.mem, self.hin, self.hout = prog, mem, hin, hout
        self.stack: list[int] = []
        self.saved: list[int] = []
        self.var_count = 0
        self.hashctr = 0
        self.loop_cycle = 0
        self.ops = 0

    def push(self, word: int) -> None:
        self.stack.append(word)
        self.var_count += 1

    def run(self, pc: int) -> int:
        prog, stack = self.prog, self.stack
        last = len(prog) - 1
        if pc != 0:
            self.saved.append(self.var_count)
            stack.append(MARK)
            self.var_count = 0
        while True:
            if self.ops > MAX_OPS:
                raise _Abort()
            self.ops += 1
            if not 0 <= pc <= last:
                raise RandHashError("RandHash: pc %d outside the program" % pc)
            insn = prog[pc]
            op = insn & 0xFF
            if op == OP_MEMORY:
                base, step, carry = insn >> 17, (insn >> 13) & 0xF, (insn >> 9) & 0xF
                self.push(self.mem[(base + (self.loop_cycle + carry) * step) & 0xFF])
            elif op == OP_IN:
                self.push(self.hin[imm32(insn) & 0xFF])
            elif op == OP_LOOP:
                ret = pc
                for i in range(sx(imm32(insn), 32)):
                    self.loop_cycle = i
                    ret = self.run(pc + 1)
                pc = ret
                if pc == last:
                    return pc
            elif op in (OP_IF_LIKELY, OP_IF_RANDOM):
                c = stack[reg_a(insn)]
                take = (c & 7) if op == OP_IF_LIKELY else (c & 1)
                pc = self.run(pc + 2) if take else self.run(pc + 1)
            elif op == OP_JMP:
                pc += insn >> 8
            elif op == OP_END:
                n = self.var_count
                if not self.saved or len(stack) < n + 1 or stack[-n - 1] != MARK:
                    raise RandHashError("RandHash: END without a matching scope at pc %d" % pc)
                hout, h = self.hout, self.hashctr
                for v in stack[len(stack) - n:]:
                    hout[h] = (hout[h] + v) & M32
                    h = (h + 1) & 0xFF
                self.hashctr = h
                del stack[len(stack) - n - 1:]
                self.var_count = self.saved.pop()
                return pc
            else:
                entry = OPCODES.get(op)
                if entry is None:
                    raise RandHashError("RandHash: invalid opcode %#x at pc %d" % (op, pc))
                try:
                    a, b = operands(insn, stack)
                except IndexError:
                    raise RandHashError("RandHash: register out of range at pc %d" % pc) from None
                for w in entry[2](a, b):
                    self.push(w)
            pc += 1


def run_cycles(prog, mem, words: list[int], cycles: int) -> list[int]:
    """Run `cycles` RandHash cycles over the 512-word state `words` in place; return the ops of each cycle."""
    lo, hi = words[0:256], words[256:512]
    m = _Machine(prog, mem, lo, hi)          # stack, varCount and loopCycle persist across cycles
    counts = []
    for _ in range(cycles):
        m.ops = 0
        try:
            m.run(0)
        except _Abort:
            pass
        except (IndexError, RecursionError) as e:
            raise RandHashError("RandHash: invalid program (%s)" % e) from None
        if m.ops > MAX_OPS:
            raise TooLong("RandHash: more than %d instructions in one cycle" % MAX_OPS)
        counts.append(m.ops)
        m.hashctr = 0
        m.hin, m.hout = m.hout, m.hin
    words[0:512] = lo + hi
    return counts
