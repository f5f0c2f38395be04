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
from .randhash_ops import C1_1, C2_1, C2_2, OPCODES, OUT_WORDS, has_imm, imm32, imm64, reg_a, reg_b, sx

OP_IN, OP_MEMORY, OP_LOOP, OP_IF_LIKELY, OP_IF_RANDOM, OP_JMP, OP_END = 64, 65, 66, 67, 68, 69, 70
_M32 = 4294967295
_ARGS = "(S, hin, hout, mem, c)"

# Each arithmetic op is a loop-free Python expression (short ones inline in the program source, the others as
# functions compiled at import, see _OP_FUNCS). Lane ops are unrolled lane by lane; {x}/{y} are lane values, {w}
# the lane width, {w1} = w - 1 and {sb} = the lane's sign bit ((x ^ sb) - sb sign-extends x). Results are masked
# to the lane (w bits, or 2w bits for the carry class) when the lanes are put back together.
_LANE_1_1 = {"POPCNT": "{x}.bit_count()", "CLZ": "{w} - {x}.bit_length()",
             "CTZ": "(({x} & -{x}).bit_length() - 1 if {x} else {w})"}
_LANE_2_1 = {"ADD": "{x} + {y}", "SUB": "{x} - {y}", "SHLL": "{x} << ({y} & {w1})", "SHRL": "{x} >> ({y} & {w1})",
             "SHRA": "(({x} ^ {sb}) - {sb}) >> ({y} & {w1})",
             "ROTL": "({x} << ({y} & {w1}) | {x} >> ({w} - ({y} & {w1})))", "MUL": "{x} * {y}"}
_LANE_2_2 = {"ADD": "{x} + {y}", "SUB": "{x} - {y}", "MUL": "(({x} ^ {sb}) - {sb}) * (({y} ^ {sb}) - {sb})",
             "MULSU": "(({x} ^ {sb}) - {sb}) * {y}", "MULU": "{x} * {y}"}
_WORD_OPS = {   # opcodes on whole words: expression over x (and y), result masked by the caller
    "BSWAP16": "(x & 0x00FF00FF) << 8 | x >> 8 & 0x00FF00FF",
    "BSWAP32": "(x & 255) << 24 | (x >> 8 & 255) << 16 | (x >> 16 & 255) << 8 | x >> 24",
    "AND": "x & y", "OR": "x | y", "XOR": "x ^ y",
    "ADD64": "x + y", "SUB64": "x - y", "SHLL64": "x << (y & 63)", "SHRL64": "x >> (y & 63)",
    "SHRA64": "((x ^ 9223372036854775808) - 9223372036854775808) >> (y & 63)",
    "ROTL64": "(x << (y & 63) | x >> (64 - (y & 63)))", "ROTR64": "(x >> (y & 63) | x << (64 - (y & 63)))",
    "MUL64": "x * y",
    "ADD64C": "x + y", "SUB64C": "x - y",
    "MUL64C": "((x ^ 9223372036854775808) - 9223372036854775808) * ((y ^ 9223372036854775808) - 9223372036854775808)",
    "MULSU64C": "((x ^ 9223372036854775808) - 9223372036854775808) * y", "MULU64C": "x * y",
}
_PUSH = {  # result words -> statements pushing t (already reduced modulo 2^(32 * words))
    1: "S.append(t)",
    2: "S.append(t & 4294967295); S.append(t >> 32)",
    4: "S.append(t & 4294967295); S.append(t >> 32 & 4294967295); S.append(t >> 64 & 4294967295); "
       "S.append(t >> 96)",
}


def _lane_value(operand: str, k: int, w: int) -> str:
    """Python source for lane k (width w) of an operand that is either an int literal or the variable x/y."""
    if operand.isdigit():
        return str((int(operand) >> (w * k)) & ((1 << w) - 1))
    if w == 32:
        return operand
    return "(%s >> %d & %d)" % (operand, w * k, (1 << w) - 1) if k else "(%s & %d)" % (operand, (1 << w) - 1)


def _result_expr(name: str, cls: str, y: str) -> str:
    """Python expression for the op's packed, reduced result over x and y (y may be an int literal)."""
    words = OUT_WORDS[cls]
    if name in _WORD_OPS:
        expr = _WORD_OPS[name].replace("y", y) if y != "y" else _WORD_OPS[name]
        return "(%s) & %d" % (expr, (1 << (32 * words)) - 1)
    base = name[:-1] if cls == C2_2 else name               # strip the carry class's trailing C
    w = int("".join(ch for ch in base if ch.isdigit()))
    kind = base.rstrip("0123456789")
    template = {C1_1: _LANE_1_1, C2_1: _LANE_2_1, C2_2: _LANE_2_2}[cls][kind]
    out_w = 2 * w if cls == C2_2 else w
    parts = []
    for k in range(32 // w):
        expr = template.format(x=_lane_value("x", k, w), y=_lane_value(y, k, w), w=w, w1=w - 1, sb=1 << (w - 1))
        part = "((%s) & %d)" % (expr, (1 << out_w) - 1)
        parts.append(part if k == 0 else "%s << %d" % (part, out_w * k))
    return " | ".join(parts)


# Short, frequent ops are written inline; every other op becomes one loop-free function compiled at import.
# Keeping program sources short matters: Python's compile() time grows with the source, and a program is
# compiled once per seed (validation runs each program only a few times).
_INLINE = {"AND", "OR", "XOR", "ADD32", "SUB32", "MUL32", "SHLL32", "SHRL32", "ADD32C", "MULU32C",
           "ADD64", "SUB64", "MUL64", "ADD64C", "MULU64C"}
_OP_FUNCS: dict[int, object] = {}
for _op, (_name, _cls, _) in OPCODES.items():
    if _name not in _INLINE:
        _ns: dict = {}
        exec("def _f(x, y):\n    return %s\n" % _result_expr(_name, _cls, "y"), _ns)
        _OP_FUNCS[_op] = _ns["_f"]


def _arith_source(op: int, name: str, cls: str, b_const: int | None) -> str:
    """Statements computing the op over x (and y, or the constant b) into t, then pushing t."""
    y = "0" if cls == C1_1 else "y" if b_const is None else str(b_const)
    if op in _OP_FUNCS:
        return "t = _f%d(x, %s); %s" % (op, y, _PUSH[OUT_WORDS[cls]])
    return "t = %s; %s" % (_result_expr(name, cls, y), _PUSH[OUT_WORDS[cls]])


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
        name, cls = entry[0], entry[1]
        ra, rb, imm = reg_a(insn), reg_b(insn), has_imm(insn)
        b_const = None
        if cls in (C1_1, C2_1, C2_2):
            load = "x = S[%d]" % ra
            if cls != C1_1:
                if imm:
                    b_const = imm32(insn)
                else:
                    load += "; y = S[%d]" % rb
        else:
            if ra < 1 or (not imm and rb < 1):
                raise Unstructured("64-bit operand at register 0")
            load = "x = S[%d] << 32 | S[%d]" % (ra, ra - 1)
            if imm:
                b_const = imm64(insn)
            else:
                load += "; y = S[%d] << 32 | S[%d]" % (rb, rb - 1)
        return load + "; " + _arith_source(op, name, cls, b_const)


def compile_program(prog: list[int]):
    """Return run(mem, words, cycles) -> ops per cycle, running the program on the 512-word state in place."""
    c = _Compiler(list(prog))
    top = ["def _top%s:" % _ARGS]
    try:
        c.seq(0, top, False)
    except RecursionError:
        raise Unstructured("scopes nested too deeply to compile") from None
    source = "\n\n".join(c.sources + ["\n".join(top)])
    namespace = {"_end": _end, "_TooLong": TooLong}
    namespace.update({"_f%d" % op: fn for op, fn in _OP_FUNCS.items()})
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
            except RecursionError:
                raise RandHashError("RandHash: scopes nested too deeply") from None
            if ctx[0] > MAX_OPS:
                raise TooLong("RandHash: more than %d instructions in one cycle" % MAX_OPS)
            counts.append(ctx[0])
            ctx[1] = 0
            hin, hout = hout, hin
        words[0:512] = lo + hi
        return counts

    run.source = source
    return run
