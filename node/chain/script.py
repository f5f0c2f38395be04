"""Bitcoin scripts as pktd uses them: opcodes, parsing, pushes, the output templates of this chain and the
OP_VOTE suffix of the Network Steward election (pkt-reference.md §6; pktd `txscript`).

Templates (the interpreter in interpreter.py runs them; nothing here decides validity):
  p2pkh     OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG
  p2pk      <pubkey> OP_CHECKSIG
  multisig  OP_m <pubkey>... OP_n OP_CHECKMULTISIG          (bare; the steward's 3-of-5 sits behind p2sh)
  p2sh      OP_HASH160 <20> OP_EQUAL                        (BIP16)
  htlc      OP_IF OP_SHA256 <32> OP_EQUALVERIFY <redeem pubkey>
            OP_ELSE <height> OP_CHECKLOCKTIMEVERIFY OP_DROP <refund pubkey> OP_ENDIF OP_CHECKSIG
            redeem: scriptSig <sig> <preimage> OP_1; refund: <sig> OP_0 with nLockTime >= height and a
            non-final input sequence
  channel   OP_IF OP_2 <payer pubkey> <payee pubkey> OP_2 OP_CHECKMULTISIG
            OP_ELSE <height> OP_CHECKLOCKTIMEVERIFY OP_DROP <payer pubkey> OP_CHECKSIG OP_ENDIF
            a one-way payment channel's funding (node/market/channel_chain.py): close by both, scriptSig
            OP_0 <payer sig> <payee sig> OP_1; refund to the payer: <sig> OP_0 with nLockTime >= height and a
            non-final input sequence
  vote      any script followed by <voteFor | OP_0> <voteAgainst | OP_0> OP_VOTE; OP_VOTE (0x66, the old
            OP_VERNOTIF) executes as OP_2DROP; a candidate is a pkScript of 1..79 bytes in a canonical push
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from .wire import DecodeError, hash160, sha256


class Op(enum.IntEnum):
    OP_0 = 0x00
    OP_PUSHDATA1 = 0x4C
    OP_PUSHDATA2 = 0x4D
    OP_PUSHDATA4 = 0x4E
    OP_1NEGATE = 0x4F
    OP_RESERVED = 0x50
    OP_1 = 0x51
    OP_16 = 0x60
    OP_NOP = 0x61
    OP_VER = 0x62
    OP_IF = 0x63
    OP_NOTIF = 0x64
    OP_VERIF = 0x65
    OP_VOTE = 0x66              # pktd: repurposed OP_VERNOTIF, executes as OP_2DROP
    OP_ELSE = 0x67
    OP_ENDIF = 0x68
    OP_VERIFY = 0x69
    OP_RETURN = 0x6A
    OP_TOALTSTACK = 0x6B
    OP_FROMALTSTACK = 0x6C
    OP_2DROP = 0x6D
    OP_2DUP = 0x6E
    OP_IFDUP = 0x73
    OP_DEPTH = 0x74
    OP_DROP = 0x75
    OP_DUP = 0x76
    OP_NIP = 0x77
    OP_OVER = 0x78
    OP_SWAP = 0x7C
    OP_CAT = 0x7E
    OP_SUBSTR = 0x7F
    OP_LEFT = 0x80
    OP_RIGHT = 0x81
    OP_SIZE = 0x82
    OP_INVERT = 0x83
    OP_AND = 0x84
    OP_OR = 0x85
    OP_XOR = 0x86
    OP_EQUAL = 0x87
    OP_EQUALVERIFY = 0x88
    OP_2MUL = 0x8D
    OP_2DIV = 0x8E
    OP_NOT = 0x91
    OP_0NOTEQUAL = 0x92
    OP_MUL = 0x95
    OP_DIV = 0x96
    OP_MOD = 0x97
    OP_LSHIFT = 0x98
    OP_RSHIFT = 0x99
    OP_RIPEMD160 = 0xA6
    OP_SHA1 = 0xA7
    OP_SHA256 = 0xA8
    OP_HASH160 = 0xA9
    OP_HASH256 = 0xAA
    OP_CODESEPARATOR = 0xAB
    OP_CHECKSIG = 0xAC
    OP_CHECKSIGVERIFY = 0xAD
    OP_CHECKMULTISIG = 0xAE
    OP_CHECKMULTISIGVERIFY = 0xAF
    OP_NOP1 = 0xB0
    OP_CHECKLOCKTIMEVERIFY = 0xB1
    OP_CHECKSEQUENCEVERIFY = 0xB2
    OP_NOP10 = 0xB9


# Bitcoin's disabled opcodes fail a script even in an unexecuted branch.
DISABLED = frozenset({Op.OP_CAT, Op.OP_SUBSTR, Op.OP_LEFT, Op.OP_RIGHT, Op.OP_INVERT, Op.OP_AND, Op.OP_OR,
                      Op.OP_XOR, Op.OP_2MUL, Op.OP_2DIV, Op.OP_MUL, Op.OP_DIV, Op.OP_MOD, Op.OP_LSHIFT,
                      Op.OP_RSHIFT})
MAX_SCRIPT_SIZE = 10000
MAX_PUSH_SIZE = 520
MAX_VOTE_CANDIDATE = 79
LOCKTIME_THRESHOLD = 500_000_000      # below: a block height, at or above: a unix time


@dataclass(frozen=True)
class ParsedOp:
    """One script element: the opcode and, for pushes, the data (b"" for OP_0)."""
    op: int
    data: bytes | None = None
    raw: bytes = b""            # the exact encoding, for FindAndDelete and canonical-push checks

    @property
    def is_push(self) -> bool:
        return self.op <= Op.OP_16 and self.op != Op.OP_RESERVED


class ScriptParseError(DecodeError):
    """A script whose push runs past its end."""


def parse(script: bytes) -> list[ParsedOp]:
    """Split a script into opcodes and pushes; a push that runs past the end raises ScriptParseError."""
    script = bytes(script)
    ops, i, n = [], 0, len(script)
    while i < n:
        start, op = i, script[i]
        i += 1
        if op <= Op.OP_PUSHDATA4:
            if op < Op.OP_PUSHDATA1:
                size = op
            else:
                width = {Op.OP_PUSHDATA1: 1, Op.OP_PUSHDATA2: 2, Op.OP_PUSHDATA4: 4}[op]
                if i + width > n:
                    raise ScriptParseError(f"truncated push length at offset {start}")
                size = int.from_bytes(script[i:i + width], "little")
                i += width
            if i + size > n:
                raise ScriptParseError(f"push of {size} bytes at offset {start} runs past the script end")
            ops.append(ParsedOp(op, script[i:i + size], script[start:i + size]))
            i += size
        else:
            ops.append(ParsedOp(op, None, script[start:i]))
    return ops


def push_data(data: bytes) -> bytes:
    """The minimal push of `data` (BIP62 rules: OP_0, OP_1..OP_16 and OP_1NEGATE for small numbers)."""
    data = bytes(data)
    n = len(data)
    if n == 0:
        return bytes([Op.OP_0])
    if n == 1 and 1 <= data[0] <= 16:
        return bytes([Op.OP_1 + data[0] - 1])
    if n == 1 and data[0] == 0x81:
        return bytes([Op.OP_1NEGATE])
    if n < Op.OP_PUSHDATA1:
        return bytes([n]) + data
    if n <= 0xFF:
        return bytes([Op.OP_PUSHDATA1, n]) + data
    if n <= 0xFFFF:
        return bytes([Op.OP_PUSHDATA2]) + struct.pack("<H", n) + data
    return bytes([Op.OP_PUSHDATA4]) + struct.pack("<I", n) + data


def encode_num(n: int) -> bytes:
    """CScriptNum serialization: little-endian magnitude with a sign bit, minimal."""
    if n == 0:
        return b""
    neg, mag = n < 0, abs(n)
    out = bytearray()
    while mag:
        out.append(mag & 0xFF)
        mag >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def decode_num(data: bytes) -> int:
    if not data:
        return 0
    mag = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(mag & ~(0x80 << (8 * (len(data) - 1))))
    return mag


def push_int(n: int) -> bytes:
    if n == 0:
        return bytes([Op.OP_0])
    if n == -1:
        return bytes([Op.OP_1NEGATE])
    if 1 <= n <= 16:
        return bytes([Op.OP_1 + n - 1])
    return push_data(encode_num(n))


def small_int(op: int) -> int | None:
    """The number an OP_0 / OP_1..OP_16 opcode stands for, else None."""
    if op == Op.OP_0:
        return 0
    if Op.OP_1 <= op <= Op.OP_16:
        return op - Op.OP_1 + 1
    return None


def is_canonical_push(pop: ParsedOp) -> bool:
    """pktd canonicalPush: a push that uses the smallest instruction for its data (non-pushes pass)."""
    op, data = pop.op, pop.data or b""
    if op > Op.OP_16:
        return True
    if Op.OP_0 < op < Op.OP_PUSHDATA1 and len(data) == 1 and data[0] <= 16:
        return False
    if op == Op.OP_PUSHDATA1 and len(data) < Op.OP_PUSHDATA1:
        return False
    if op == Op.OP_PUSHDATA2 and len(data) <= 0xFF:
        return False
    if op == Op.OP_PUSHDATA4 and len(data) <= 0xFFFF:
        return False
    return True


def is_push_only(script: bytes) -> bool:
    try:
        return all(p.is_push for p in parse(script))
    except ScriptParseError:
        return False


def find_and_delete(script: bytes, data: bytes) -> bytes:
    """The script code a signature hash covers: btcd removeOpcodeByData drops every canonical push whose data
    contains `data` (the signature), at opcode boundaries."""
    try:
        ops = parse(script)
    except ScriptParseError:
        return bytes(script)
    return b"".join(p.raw for p in ops if not (p.is_push and is_canonical_push(p) and data in (p.data or b"")))


# --- templates ---------------------------------------------------------------------------------------------------

def p2pkh(pubkey_hash: bytes) -> bytes:
    if len(pubkey_hash) != 20:
        raise ValueError("a pubkey hash is 20 bytes")
    return bytes([Op.OP_DUP, Op.OP_HASH160, 20]) + pubkey_hash + bytes([Op.OP_EQUALVERIFY, Op.OP_CHECKSIG])


def p2pk(pubkey: bytes) -> bytes:
    return push_data(pubkey) + bytes([Op.OP_CHECKSIG])


def multisig(m: int, pubkeys: list[bytes]) -> bytes:
    if not 1 <= m <= len(pubkeys) <= 16:
        raise ValueError("multisig needs 1 <= m <= n <= 16")
    return push_int(m) + b"".join(push_data(k) for k in pubkeys) + push_int(len(pubkeys)) + \
        bytes([Op.OP_CHECKMULTISIG])


def p2sh(redeem_script: bytes) -> bytes:
    return bytes([Op.OP_HASH160, 20]) + hash160(redeem_script) + bytes([Op.OP_EQUAL])


def is_p2sh(script: bytes) -> bool:
    return len(script) == 23 and script[0] == Op.OP_HASH160 and script[1] == 20 and script[22] == Op.OP_EQUAL


def htlc(payment_hash: bytes, redeem_pubkey: bytes, refund_pubkey: bytes, lock_height: int) -> bytes:
    """Pay to `redeem_pubkey` with the SHA-256 preimage of `payment_hash`, or to `refund_pubkey` from the
    absolute block height `lock_height` on."""
    if len(payment_hash) != 32:
        raise ValueError("the payment hash is 32 bytes (SHA-256)")
    if not 0 < lock_height < LOCKTIME_THRESHOLD:
        raise ValueError("the refund lock is a block height")
    return (bytes([Op.OP_IF, Op.OP_SHA256]) + push_data(payment_hash) + bytes([Op.OP_EQUALVERIFY])
            + push_data(redeem_pubkey) + bytes([Op.OP_ELSE]) + push_int(lock_height)
            + bytes([Op.OP_CHECKLOCKTIMEVERIFY, Op.OP_DROP]) + push_data(refund_pubkey)
            + bytes([Op.OP_ENDIF, Op.OP_CHECKSIG]))


def channel(payer_pubkey: bytes, payee_pubkey: bytes, refund_height: int) -> bytes:
    """A one-way channel's funding: spent by payer and payee together (2-of-2), or by the payer alone from the
    absolute block height `refund_height` on."""
    if not 0 < refund_height < LOCKTIME_THRESHOLD:
        raise ValueError("the refund lock is a block height")
    return (bytes([Op.OP_IF]) + multisig(2, [payer_pubkey, payee_pubkey]) + bytes([Op.OP_ELSE])
            + push_int(refund_height) + bytes([Op.OP_CHECKLOCKTIMEVERIFY, Op.OP_DROP]) + push_data(payer_pubkey)
            + bytes([Op.OP_CHECKSIG, Op.OP_ENDIF]))


def htlc_hash(preimage: bytes) -> bytes:
    return sha256(preimage)


def op_return(data: bytes) -> bytes:
    return bytes([Op.OP_RETURN]) + push_data(data)


def with_vote(script: bytes, vote_for: bytes | None = None, vote_against: bytes | None = None) -> bytes:
    """Append the OP_VOTE suffix: approve `vote_for` and/or disapprove `vote_against` (candidate pkScripts)."""
    for cand in (vote_for, vote_against):
        if cand is not None and not 1 <= len(cand) <= MAX_VOTE_CANDIDATE:
            raise ValueError(f"a vote candidate is a pkScript of 1..{MAX_VOTE_CANDIDATE} bytes")
    return (bytes(script) + (push_data(vote_for) if vote_for else bytes([Op.OP_0]))
            + (push_data(vote_against) if vote_against else bytes([Op.OP_0])) + bytes([Op.OP_VOTE]))


def votes(script: bytes) -> tuple[bytes | None, bytes | None]:
    """pktd ElectionGetVotesForAgainst: (voteFor, voteAgainst) of a pkScript, each None when absent.

    The first OP_VOTE preceded by two acceptable elements counts; an element is OP_0 (no vote) or a canonical push
    of 1..79 bytes. Unparseable scripts carry no vote."""
    try:
        ops = parse(script)
    except ScriptParseError:
        return None, None
    vote_for = vote_against = None

    def candidate(p: ParsedOp):
        if p.op == Op.OP_0:
            return True, None
        if is_canonical_push(p) and p.data is not None and 0 < len(p.data) <= MAX_VOTE_CANDIDATE:
            return True, p.data
        return False, None

    for i, p in enumerate(ops):
        if p.op != Op.OP_VOTE or i < 2:
            continue
        ok, against = candidate(ops[i - 1])
        if not ok:
            continue
        if against is not None:
            vote_against = against
        ok, vfor = candidate(ops[i - 2])
        if not ok:
            vote_against = None
            continue
        if vfor is not None:
            vote_for = vfor
        break
    return vote_for, vote_against


def strip_vote(script: bytes) -> bytes:
    """The script without a trailing `<a> <b> OP_VOTE` suffix (for recognising whose output it is)."""
    try:
        ops = parse(script)
    except ScriptParseError:
        return bytes(script)
    if len(ops) >= 3 and ops[-1].op == Op.OP_VOTE and ops[-2].is_push and ops[-3].is_push:
        return b"".join(p.raw for p in ops[:-3])
    return bytes(script)


def classify(script: bytes) -> tuple[str, tuple]:
    """Recognise this chain's templates (vote suffix ignored), for wallets and displays; consensus never uses it.
    Returns (kind, fields): p2pkh (hash,), p2pk (pubkey,), p2sh (hash,), multisig (m, pubkeys),
    htlc (hash, redeem_pk, refund_pk, height), null_data (data,), or nonstandard ()."""
    base = strip_vote(script)
    try:
        ops = parse(base)
    except ScriptParseError:
        return "nonstandard", ()
    shape = [p.op for p in ops]
    if len(base) == 25 and shape == [Op.OP_DUP, Op.OP_HASH160, 20, Op.OP_EQUALVERIFY, Op.OP_CHECKSIG]:
        return "p2pkh", (ops[2].data,)
    if is_p2sh(base):
        return "p2sh", (ops[1].data,)
    if len(ops) == 2 and ops[1].op == Op.OP_CHECKSIG and ops[0].data and len(ops[0].data) in (33, 65):
        return "p2pk", (ops[0].data,)
    if len(ops) >= 4 and shape[-1] == Op.OP_CHECKMULTISIG:
        m, n = small_int(shape[0]), small_int(shape[-2])
        keys = [p.data for p in ops[1:-2]]
        if m and n and len(keys) == n and m <= n and all(k and len(k) in (33, 65) for k in keys):
            return "multisig", (m, keys)
    if (len(ops) == 12 and shape[:2] == [Op.OP_IF, Op.OP_SHA256] and shape[3] == Op.OP_EQUALVERIFY
            and shape[5] == Op.OP_ELSE and shape[7:9] == [Op.OP_CHECKLOCKTIMEVERIFY, Op.OP_DROP]
            and shape[10:] == [Op.OP_ENDIF, Op.OP_CHECKSIG] and ops[2].data and len(ops[2].data) == 32):
        height = small_int(ops[6].op)
        if height is None:
            height = decode_num(ops[6].data or b"")
        return "htlc", (ops[2].data, ops[4].data, ops[9].data, height)
    if shape and shape[0] == Op.OP_RETURN:
        return "null_data", (b"".join(p.data or b"" for p in ops[1:]),)
    return "nonstandard", ()
