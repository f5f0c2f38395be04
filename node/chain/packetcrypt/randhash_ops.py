"""RandHash arithmetic opcodes 1..63 and instruction field decoding (randhash.md §4, §5, §7.4, §8).

Every opcode is a function of its decoded operands: 32-bit words for classes 1_1, 2_1 and 2_2, 64-bit values
for 4_2 and 4_4. It returns the words it pushes, in push order (least significant word first), as a tuple.
Lane-wise ops (8/16-bit) apply independently to each lane of a and of b.
"""
from __future__ import annotations

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
M128 = (1 << 128) - 1

# classes: operand shape and result size
C1_1, C2_1, C2_2, C4_2, C4_4 = "1_1", "2_1", "2_2", "4_2", "4_4"
OUT_WORDS = {C1_1: 1, C2_1: 1, C2_2: 2, C4_2: 2, C4_4: 4}


# --- instruction fields ----------------------------------------------------------------------------
def op_of(insn: int) -> int:
    return insn & 0xFF


def reg_a(insn: int) -> int:
    return (insn >> 9) & 0x1FF


def reg_b(insn: int) -> int:
    return (insn >> 20) & 0x1FF


def has_imm(insn: int) -> bool:
    return bool((insn >> 18) & 1)


def imm64(insn: int) -> int:
    """The immediate as a u64: a sign-extended 12-bit value, or a 'pattern' when bit 19 is set."""
    f = insn >> 20
    if not (insn >> 19) & 1:
        return (f - 0x1000 if f & 0x800 else f) & M64
    a, b, i, s = f & 31, (f >> 5) & 31, (f >> 10) & 1, (f >> 11) & 1
    v = M64 if i == 0 else 0x7FFF_FFFF_FFFF_FFFF
    v ^= (1 << b) ^ (1 << a)
    if s:
        v |= 1 << 63
    return v


def imm32(insn: int) -> int:
    return imm64(insn) & M32


def sx(v: int, w: int) -> int:
    """The low w bits of v as a two's-complement signed integer."""
    v &= (1 << w) - 1
    return v - (1 << w) if v >> (w - 1) else v


# --- lane helpers ----------------------------------------------------------------------------------
def _lanes1(fn, w):
    """Apply fn(x) to each w-bit lane of a 32-bit word."""
    mask = (1 << w) - 1

    def op(a, b=0):
        r = 0
        for k in range(0, 32, w):
            r |= (fn((a >> k) & mask, w) & mask) << k
        return (r,)
    return op


def _lanes2(fn, w):
    """Apply fn(x, y) to each pair of w-bit lanes of two 32-bit words (result w bits per lane)."""
    mask = (1 << w) - 1
    if w == 32:
        return lambda a, b: (fn(a, b, 32) & M32,)

    def op(a, b):
        r = 0
        for k in range(0, 32, w):
            r |= (fn((a >> k) & mask, (b >> k) & mask, w) & mask) << k
        return (r,)
    return op


def _lanes2c(fn, w):
    """Like _lanes2 but each lane gives a 2w-bit result, packed into a 64-bit value (pushed lo, hi)."""
    mask, wide = (1 << w) - 1, (1 << (2 * w)) - 1

    def op(a, b):
        r = 0
        for k in range(0, 32 // w):
            x, y = (a >> (w * k)) & mask, (b >> (w * k)) & mask
            r |= (fn(x, y, w) & wide) << (2 * w * k)
        return (r & M32, r >> 32)
    return op


def _words64(fn):
    def op(a, b):
        r = fn(a, b) & M64
        return (r & M32, r >> 32)
    return op


def _words128(fn):
    def op(a, b):
        r = fn(a, b) & M128
        return (r & M32, (r >> 32) & M32, (r >> 64) & M32, r >> 96)
    return op


# --- lane functions ---------------------------------------------------------------------------------
def _popcnt(x, w):
    return x.bit_count()


def _clz(x, w):
    return w - x.bit_length()


def _ctz(x, w):
    return (x & -x).bit_length() - 1 if x else w


def _add(x, y, w):
    return x + y


def _sub(x, y, w):
    return x - y


def _shll(x, y, w):
    return x << (y & (w - 1))


def _shrl(x, y, w):
    return x >> (y & (w - 1))


def _shra(x, y, w):
    return sx(x, w) >> (y & (w - 1))


def _rotl(x, y, w):
    s = y & (w - 1)
    return (x << s) | (x >> (w - s))


def _mul(x, y, w):
    return x * y


def _muls(x, y, w):
    return sx(x, w) * sx(y, w)


def _mulsu(x, y, w):
    return sx(x, w) * y


def _bswap16(a, b=0):
    return (((a & 0x00FF00FF) << 8) | ((a >> 8) & 0x00FF00FF),)


def _bswap32(a, b=0):
    return (int.from_bytes(a.to_bytes(4, "little"), "big"),)


def _rotl64(a, b):
    s = b & 63
    return (a << s) | (a >> (64 - s))


def _rotr64(a, b):
    s = b & 63
    return (a >> s) | (a << (64 - s))


# opcode -> (name, class, function(a, b) -> tuple of pushed words)
OPCODES: dict[int, tuple[str, str, object]] = {
    1: ("POPCNT8", C1_1, _lanes1(_popcnt, 8)),
    2: ("POPCNT16", C1_1, _lanes1(_popcnt, 16)),
    3: ("POPCNT32", C1_1, _lanes1(_popcnt, 32)),
    4: ("CLZ8", C1_1, _lanes1(_clz, 8)),
    5: ("CLZ16", C1_1, _lanes1(_clz, 16)),
    6: ("CLZ32", C1_1, _lanes1(_clz, 32)),
    7: ("CTZ8", C1_1, _lanes1(_ctz, 8)),
    8: ("CTZ16", C1_1, _lanes1(_ctz, 16)),
    9: ("CTZ32", C1_1, _lanes1(_ctz, 32)),
    10: ("BSWAP16", C1_1, _bswap16),
    11: ("BSWAP32", C1_1, _bswap32),
    33: ("AND", C2_1, lambda a, b: (a & b,)),
    34: ("OR", C2_1, lambda a, b: (a | b,)),
    35: ("XOR", C2_1, lambda a, b: (a ^ b,)),
    51: ("ADD64", C4_2, _words64(lambda a, b: a + b)),
    52: ("SUB64", C4_2, _words64(lambda a, b: a - b)),
    53: ("SHLL64", C4_2, _words64(lambda a, b: a << (b & 63))),
    54: ("SHRL64", C4_2, _words64(lambda a, b: a >> (b & 63))),
    55: ("SHRA64", C4_2, _words64(lambda a, b: sx(a, 64) >> (b & 63))),
    56: ("ROTL64", C4_2, _words64(_rotl64)),
    57: ("ROTR64", C4_2, _words64(_rotr64)),
    58: ("MUL64", C4_2, _words64(lambda a, b: a * b)),
    59: ("ADD64C", C4_4, _words128(lambda a, b: a + b)),
    60: ("SUB64C", C4_4, _words128(lambda a, b: a - b)),
    61: ("MUL64C", C4_4, _words128(lambda a, b: sx(a, 64) * sx(b, 64))),
    62: ("MULSU64C", C4_4, _words128(lambda a, b: sx(a, 64) * b)),
    63: ("MULU64C", C4_4, _words128(lambda a, b: a * b)),
}
for _base, _name, _fn in ((12, "ADD", _add), (15, "SUB", _sub), (18, "SHLL", _shll), (21, "SHRL", _shrl),
                          (24, "SHRA", _shra), (27, "ROTL", _rotl), (30, "MUL", _mul)):
    for _k, _w in enumerate((8, 16, 32)):
        OPCODES[_base + _k] = (f"{_name}{_w}", C2_1, _lanes2(_fn, _w))
for _base, _name, _fn in ((36, "ADD", _add), (39, "SUB", _sub), (42, "MUL", _muls), (45, "MULSU", _mulsu),
                          (48, "MULU", _mul)):
    for _k, _w in enumerate((8, 16, 32)):
        OPCODES[_base + _k] = (f"{_name}{_w}C", C2_2, _lanes2c(_fn, _w))

OPCODE_BY_NAME = {name: code for code, (name, _, _) in OPCODES.items()}


def operands(insn: int, stack) -> tuple[int, int]:
    """Fetch (a, b) for an arithmetic insn from the absolute-indexed stack (§7.4)."""
    cls = OPCODES[insn & 0xFF][1]
    ra = reg_a(insn)
    if cls == C1_1:
        return stack[ra], 0
    if cls in (C2_1, C2_2):
        return stack[ra], (imm32(insn) if has_imm(insn) else stack[reg_b(insn)])
    if ra < 1:
        raise IndexError("64-bit operand at register 0")
    a = (stack[ra] << 32) | stack[ra - 1]
    if has_imm(insn):
        return a, imm64(insn)
    rb = reg_b(insn)
    if rb < 1:
        raise IndexError("64-bit operand at register 0")
    return a, (stack[rb] << 32) | stack[rb - 1]


def execute(insn: int, stack) -> tuple:
    """The words an arithmetic instruction pushes, given the stack it reads its registers from."""
    entry = OPCODES.get(insn & 0xFF)
    if entry is None:
        raise ValueError("not an arithmetic opcode: %#x" % (insn & 0xFF))
    a, b = operands(insn, stack)
    return entry[2](a, b)
