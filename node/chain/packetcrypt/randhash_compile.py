"""Compile a RandHash program to Python source: the fast pure-Python path (randhash.md §7).

A program's control flow is static except for which IF arm runs, so each scope (loop body or IF arm) becomes
one Python function, straight-line instructions become inline statements with decoded constants, and the
instruction counter is bumped once per straight-line run instead of once per instruction. Generated programs
always fit this shape; a hand-written program whose two IF arms continue at different places (or that is
otherwise malformed) raises Unstructured, and the caller uses the reference interpreter instead.
"""
from __future__ import annotations

from .randgen import RandHashError
from .randhash_interp import MAX_OPS, TooLong
from .randhash_ops import C1_1, C2_1, C2_2, OPCODES, has_imm, imm32, imm64, reg_a, reg_b, sx

OP_IN, OP_MEMORY, OP_LOOP, OP_IF_LIKELY, OP_IF_RANDOM, OP_JMP, OP_END = 64, 65, 66, 67, 68, 69, 70
_M32 = 4294967295
_M64 = (1 << 64) - 1
_ARGS = "(S, hin, hout, mem, c)"

# simple opcodes written inline: opcode -> expression pushed (one word) over operands a, b
_INLINE1 = {
    3: "{a}.bit_count()",
    14: "({a} + {b}) & 4294967295",
    17: "({a} - {b}) & 4294967295",
    20: "({a} << ({b} & 31)) & 4294967295",
    23: "{a} >> ({b} & 31)",
    32: "({a} * {b}) & 4294967295",
    33: "{a} & {b}",
    34: "{a} | {b}",
    35: "{a} ^ {b}",
}
# opcodes giving one 64-bit value t pushed as (lo, hi): opcode -> expression for t
_INLINE2 = {
    38: "{a} + {b}",
    50: "{a} * {b}",
    51: "({a} + {b}) & 18446744073709551615",
    52: "({a} - {b}) & 18446744073709551615",
    58: "({a} * {b}) & 18446744073709551615",
}


class Unstructured(Exception):
    """The program's control flow does not fit the compiled form; interpret it instead."""


def _end(S, b, hout, c):
    """END: add the scope's variables into hashOut, then drop them and the scope marker."""
    h = c[1]
    for v in S[b:]:
        hout[h] = (hout[h] + v) & _M32
        h = (h + 1) & 255
    c[1] = h
    del S[b - 1:]


class _Compiler:
    def __init__(self, prog: list[int]):
        self.prog = prog
        self.last = len(prog) - 1
        self.scopes: dict[int, tuple[str, int]] = {}   # start pc -> (function name, pc of its END)
        self.sources: list[str] = []

    def scope(self, pc: int) -> tuple[str, int]:
        if pc not in self.scopes:
            name = "_s%d" % pc
            lines = ["def %s%s:" % (name, _ARGS), "    S.append(4294967295); b = len(S)"]
            end = self.seq(pc, lines, True)
            self.sources.append("\n".join(lines))
            self.scopes[pc] = (name, end)
        return self.scopes[pc]

    def resolve(self, pc: int) -> tuple[int, int]:
        """Follow JMPs from pc: (where execution really continues, number of JMPs executed)."""
        n = 0
        while 0 <= pc <= self.last and self.prog[pc] & 0xFF == OP_JMP:
            pc += (self.prog[pc] >> 8) + 1
            n += 1
        return pc, n

    def seq(self, pc: int, lines: list[str], in_scope: bool) -> int:
        """Compile from pc to the end of the current scope; returns the pc where the scope ends."""
        ind = "    "
        pending = 0
        while True:
            if not 0 <= pc <= self.last:
                raise Unstructured("pc outside the program")
            insn = self.prog[pc]
            op = insn & 0xFF
            pending += 1
            if op == OP_MEMORY:
                base, step, carry = insn >> 17, (insn >> 13) & 0xF, (insn >> 9) & 0xF
                lines.append(ind + "S.append(mem[(%d + (c[2] + %d) * %d) & 255])" % (base, carry, step))
            elif op == OP_IN:
                lines.append(ind + "S.append(hin[%d])" % (imm32(insn) & 0xFF))
            elif op == OP_JMP:
                pc += insn >> 8
            elif op == OP_END:
                if not in_scope:
                    raise Unstructured("END at top level")
                lines.append(ind + "c[0] += %d" % pending)
                lines.append(ind + "_end(S, b, hout, c)")
                return pc
            elif op == OP_LOOP:
                lines.append(ind + "c[0] += %d" % pending)
                pending = 0
                count = sx(imm32(insn), 32)
                ret = pc
                if count > 0:
                    name, ret = self.scope(pc + 1)
                    lines += [ind + "for i in range(%d):" % count, ind + "    c[2] = i",
                              ind + "    %s%s" % (name, _ARGS),
                              ind + "    if c[0] > %d: raise _TooLong()" % MAX_OPS]
                pc = ret
                if pc == self.last:
                    if in_scope:     # the scope would return without its END: not a well-formed program
                        raise Unstructured("scope ends at the program's last LOOP")
                    return pc
            elif op in (OP_IF_LIKELY, OP_IF_RANDOM):
                lines.append(ind + "c[0] += %d" % pending)
                pending = 0
                then_name, then_end = self.scope(pc + 2)
                else_name, else_end = self.scope(pc + 1)
                then_cont, then_jmps = self.resolve(then_end + 1)
                else_cont, else_jmps = self.resolve(else_end + 1)
                if then_cont != else_cont:
                    raise Unstructured("IF arms continue at different places")
                mask = 7 if op == OP_IF_LIKELY else 1
                lines.append(ind + "if S[%d] & %d:" % (reg_a(insn), mask))
                lines.append(ind + "    %s%s" % (then_name, _ARGS))
                if then_jmps:
                    lines.append(ind + "    c[0] += %d" % then_jmps)
                lines.append(ind + "else:")
                lines.append(ind + "    %s%s" % (else_name, _ARGS))
                if else_jmps:
                    lines.append(ind + "    c[0] += %d" % else_jmps)
                pc = then_cont - 1
            else:
                lines.append(ind + self.arith(insn, pc))
            pc += 1

    def arith(self, insn: int, pc: int) -> str:
        op = insn & 0xFF
        entry = OPCODES.get(op)
        if entry is None:
            raise Unstructured("invalid opcode %#x at pc %d" % (op, pc))
        cls = entry[1]
        ra, rb, imm = reg_a(insn), reg_b(insn), has_imm(insn)
        if cls in (C1_1, C2_1, C2_2):
            a = "S[%d]" % ra
            b = "0" if cls == C1_1 else (str(imm32(insn)) if imm else "S[%d]" % rb)
        else:
            if ra < 1 or (not imm and rb < 1):
                raise Unstructured("64-bit operand at register 0")
            a = "(S[%d] << 32 | S[%d])" % (ra, ra - 1)
            b = str(imm64(insn)) if imm else "(S[%d] << 32 | S[%d])" % (rb, rb - 1)
        if op in _INLINE1:
            return "S.append(%s)" % _INLINE1[op].format(a=a, b=b)
        if op in _INLINE2:
            return "t = %s; S.append(t & 4294967295); S.append(t >> 32)" % _INLINE2[op].format(a=a, b=b)
        return "S += _o%d(%s, %s)" % (op, a, b)


def compile_program(prog: list[int]):
    """Return run(mem, words, cycles) -> ops per cycle, running the program on the 512-word state in place."""
    c = _Compiler(list(prog))
    top = ["def _top%s:" % _ARGS]
    c.seq(0, top, False)
    source = "\n\n".join(c.sources + ["\n".join(top)])
    namespace = {"_end": _end, "_TooLong": TooLong}
    namespace.update({"_o%d" % k: fn for k, (_, _, fn) in OPCODES.items()})
    exec(compile(source, "<randhash program>", "exec"), namespace)
    top_fn = namespace["_top"]

    def run(mem, words, cycles):
        lo, hi = words[0:256], words[256:512]
        hin, hout = lo, hi
        stack: list[int] = []
        ctx = [0, 0, 0]                  # ops this cycle, hashctr, loopCycle
        counts = []
        for _ in range(cycles):
            ctx[0] = 0
            try:
                top_fn(stack, hin, hout, mem, ctx)
            except IndexError:
                raise RandHashError("RandHash: register out of range") from None
            if ctx[0] > MAX_OPS:
                raise TooLong("RandHash: more than %d instructions in one cycle" % MAX_OPS)
            counts.append(ctx[0])
            ctx[1] = 0
            hin, hout = hout, hin
        words[0:512] = lo + hi
        return counts

    run.source = source
    return run
