"""A small Bitcoin script interpreter: the opcodes this chain's scripts need, executed for real.

It runs scriptSig, then scriptPubKey on the resulting stack, then (BIP16) the redeem script of a pay-to-script-hash
output; the spend is valid when the final top element is true. Signatures are DER (BIP66 strict encoding) plus a
hash-type byte over the legacy signature hash, checked with libsecp256k1 (coincurve); a high-S signature is
normalised first, as consensus allows it. OP_CHECKLOCKTIMEVERIFY (BIP65) and OP_VOTE (pktd: OP_2DROP) are active
from genesis.

Implemented: pushes, OP_1NEGATE, OP_0..OP_16, OP_NOP, OP_NOP1/4-10, OP_IF/NOTIF/ELSE/ENDIF, OP_VERIFY, OP_RETURN,
OP_TOALTSTACK/FROMALTSTACK, OP_2DROP, OP_2DUP, OP_IFDUP, OP_DEPTH, OP_DROP, OP_DUP, OP_NIP, OP_OVER, OP_SWAP,
OP_SIZE, OP_EQUAL(VERIFY), OP_NOT, OP_0NOTEQUAL, OP_RIPEMD160, OP_SHA1, OP_SHA256, OP_HASH160, OP_HASH256,
OP_CHECKSIG(VERIFY), OP_CHECKMULTISIG(VERIFY), OP_CHECKLOCKTIMEVERIFY, OP_VOTE. Any other opcode fails the
script when executed (UNSUPPORTED_OPCODE): a pktlab chain is stricter than pktd there, never looser. Bitcoin's
disabled opcodes and OP_VERIF fail even in an unexecuted branch. Limits: script 10000 bytes, push 520 bytes,
201 non-push opcodes, 1000 stack elements, 20 multisig keys.
"""
from __future__ import annotations

import enum
import hashlib
from typing import Protocol

import coincurve
from coincurve.ecdsa import cdata_to_der, der_to_cdata, signature_normalize

from .script import (DISABLED, LOCKTIME_THRESHOLD, MAX_PUSH_SIZE, MAX_SCRIPT_SIZE, Op, ScriptParseError,
                     decode_num, encode_num, is_p2sh, is_push_only, parse, small_int)
from .tx import SEQUENCE_FINAL, Transaction
from .wire import hash160, sha256, sha256d

MAX_OPS = 201
MAX_STACK = 1000
MAX_MULTISIG_KEYS = 20


class ScriptReason(enum.Enum):
    BAD_FORMAT = "BAD_FORMAT"                    # unparseable script or over the size limits
    EVAL_FALSE = "EVAL_FALSE"                    # finished with false (or empty) on top
    VERIFY_FAILED = "VERIFY_FAILED"              # OP_VERIFY / OP_EQUALVERIFY on false
    BAD_SIGNATURE = "BAD_SIGNATURE"              # OP_CHECKSIGVERIFY / OP_CHECKMULTISIGVERIFY failed
    BAD_SIGNATURE_ENCODING = "BAD_SIGNATURE_ENCODING"
    STACK_UNDERFLOW = "STACK_UNDERFLOW"
    STACK_OVERFLOW = "STACK_OVERFLOW"
    UNBALANCED_CONDITIONAL = "UNBALANCED_CONDITIONAL"
    OP_RETURN = "OP_RETURN"
    DISABLED_OPCODE = "DISABLED_OPCODE"
    UNSUPPORTED_OPCODE = "UNSUPPORTED_OPCODE"
    TOO_MANY_OPS = "TOO_MANY_OPS"
    PUSH_SIZE = "PUSH_SIZE"
    BAD_NUMBER = "BAD_NUMBER"
    NEGATIVE_LOCKTIME = "NEGATIVE_LOCKTIME"
    UNSATISFIED_LOCKTIME = "UNSATISFIED_LOCKTIME"
    SIG_PUSHONLY = "SIG_PUSHONLY"                # P2SH scriptSig with non-push opcodes
    MULTISIG_COUNT = "MULTISIG_COUNT"


SIGNATURE_REASONS = frozenset({ScriptReason.BAD_SIGNATURE, ScriptReason.BAD_SIGNATURE_ENCODING})


class ScriptError(Exception):
    def __init__(self, reason: ScriptReason, detail: str = ""):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason


class Checker(Protocol):
    """What a script needs from the spending transaction."""

    def check_sig(self, sig: bytes, pubkey: bytes, script_code: bytes) -> bool: ...

    def check_lock_time(self, lock_time: int) -> None: ...


def is_strict_der(sig: bytes) -> bool:
    """Bitcoin IsValidSignatureEncoding (BIP66): DER with minimal positive integers, plus the hash-type byte."""
    n = len(sig)
    if n < 9 or n > 73 or sig[0] != 0x30 or sig[1] != n - 3:
        return False
    len_r = sig[3]
    if 5 + len_r >= n:
        return False
    len_s = sig[5 + len_r]
    if len_r + len_s + 7 != n:
        return False
    if sig[2] != 0x02 or len_r == 0 or sig[4] & 0x80 or (len_r > 1 and sig[4] == 0 and not sig[5] & 0x80):
        return False
    s_at = 6 + len_r
    if sig[s_at - 2] != 0x02 or len_s == 0 or sig[s_at] & 0x80:
        return False
    return not (len_s > 1 and sig[s_at] == 0 and not sig[s_at + 1] & 0x80)


def verify_ecdsa(pubkey: bytes, der: bytes, digest: bytes) -> bool:
    """secp256k1 ECDSA over a 32-byte digest; malformed keys or signatures are simply invalid."""
    try:
        key = coincurve.PublicKey(bytes(pubkey))
        _, normal = signature_normalize(der_to_cdata(bytes(der)))
        return key.verify(cdata_to_der(normal), digest, hasher=None)
    except (ValueError, TypeError):
        return False


class TxChecker:
    """Signature and lock-time checks against input `index` of `tx`."""

    def __init__(self, tx: Transaction, index: int):
        self.tx = tx
        self.index = index
        self.failed_signatures = 0         # non-empty signatures that did not verify (to name a failure)

    def check_sig(self, sig: bytes, pubkey: bytes, script_code: bytes) -> bool:
        if not sig:
            return False
        # consensus takes any hash-type byte (strict hash types are relay policy in Bitcoin and btcd)
        digest = self.tx.signature_hash(self.index, script_code, sig[-1], sig)
        ok = verify_ecdsa(pubkey, sig[:-1], digest)
        self.failed_signatures += not ok
        return ok

    def check_lock_time(self, lock_time: int) -> None:
        tx_lock = self.tx.lock_time
        if (lock_time < LOCKTIME_THRESHOLD) != (tx_lock < LOCKTIME_THRESHOLD):
            raise ScriptError(ScriptReason.UNSATISFIED_LOCKTIME, "lock time kinds differ (height vs time)")
        if lock_time > tx_lock:
            raise ScriptError(ScriptReason.UNSATISFIED_LOCKTIME, f"needs lock time {lock_time}, tx has {tx_lock}")
        if self.tx.inputs[self.index].sequence == SEQUENCE_FINAL:
            raise ScriptError(ScriptReason.UNSATISFIED_LOCKTIME, "input sequence is final")


def _truthy(v: bytes) -> bool:
    """CastToBool: any non-zero byte, except a lone sign bit (negative zero) at the end."""
    for i, b in enumerate(v):
        if b:
            return not (i == len(v) - 1 and b == 0x80)
    return False


def _num(v: bytes, max_len: int = 4) -> int:
    if len(v) > max_len:
        raise ScriptError(ScriptReason.BAD_NUMBER, f"{len(v)}-byte number")
    return decode_num(v)


_TRUE, _FALSE = b"\x01", b""
_HASHES = {Op.OP_RIPEMD160: lambda d: hashlib.new("ripemd160", d).digest(),
           Op.OP_SHA1: lambda d: hashlib.sha1(d).digest(), Op.OP_SHA256: sha256,
           Op.OP_HASH160: hash160, Op.OP_HASH256: sha256d}
_NOPS = {Op.OP_NOP, Op.OP_NOP1} | set(range(Op.OP_CHECKSEQUENCEVERIFY + 1, Op.OP_NOP10 + 1))


class _Machine:
    def __init__(self, checker: Checker):
        self.checker = checker
        self.stack: list[bytes] = []
        self.alt: list[bytes] = []
        self.op_count = 0

    def pop(self) -> bytes:
        if not self.stack:
            raise ScriptError(ScriptReason.STACK_UNDERFLOW)
        return self.stack.pop()

    def top(self, depth: int = 1) -> bytes:
        if len(self.stack) < depth:
            raise ScriptError(ScriptReason.STACK_UNDERFLOW)
        return self.stack[-depth]

    def count_ops(self, n: int) -> None:
        self.op_count += n
        if self.op_count > MAX_OPS:
            raise ScriptError(ScriptReason.TOO_MANY_OPS)

    def run(self, script: bytes) -> None:
        if len(script) > MAX_SCRIPT_SIZE:
            raise ScriptError(ScriptReason.BAD_FORMAT, f"script of {len(script)} bytes")
        try:
            ops = parse(script)
        except ScriptParseError as e:
            raise ScriptError(ScriptReason.BAD_FORMAT, str(e)) from None
        cond: list[bool] = []
        self.op_count = 0
        for p in ops:
            executing = all(cond)
            if p.data is not None and len(p.data) > MAX_PUSH_SIZE:
                raise ScriptError(ScriptReason.PUSH_SIZE, f"{len(p.data)}-byte push")
            if p.op > Op.OP_16:
                self.count_ops(1)
            if p.op in DISABLED or p.op == Op.OP_VERIF:
                raise ScriptError(ScriptReason.DISABLED_OPCODE, Op(p.op).name)
            if p.op in (Op.OP_IF, Op.OP_NOTIF):
                value = False
                if executing:
                    value = _truthy(self.pop())
                    if p.op == Op.OP_NOTIF:
                        value = not value
                cond.append(value)
            elif p.op == Op.OP_ELSE:
                if not cond:
                    raise ScriptError(ScriptReason.UNBALANCED_CONDITIONAL, "OP_ELSE without OP_IF")
                cond[-1] = not cond[-1]
            elif p.op == Op.OP_ENDIF:
                if not cond:
                    raise ScriptError(ScriptReason.UNBALANCED_CONDITIONAL, "OP_ENDIF without OP_IF")
                cond.pop()
            elif executing:
                self.step(p.op, p.data, script)
            if len(self.stack) + len(self.alt) > MAX_STACK:
                raise ScriptError(ScriptReason.STACK_OVERFLOW)
        if cond:
            raise ScriptError(ScriptReason.UNBALANCED_CONDITIONAL, "OP_IF without OP_ENDIF")

    def step(self, op: int, data: bytes | None, script: bytes) -> None:
        s = self.stack
        if data is not None:
            s.append(data)
        elif op == Op.OP_1NEGATE:
            s.append(b"\x81")
        elif small_int(op) is not None:
            s.append(bytes([small_int(op)]))
        elif op in _NOPS:
            pass
        elif op == Op.OP_VERIFY:
            if not _truthy(self.pop()):
                raise ScriptError(ScriptReason.VERIFY_FAILED, "OP_VERIFY")
        elif op == Op.OP_RETURN:
            raise ScriptError(ScriptReason.OP_RETURN)
        elif op == Op.OP_TOALTSTACK:
            self.alt.append(self.pop())
        elif op == Op.OP_FROMALTSTACK:
            if not self.alt:
                raise ScriptError(ScriptReason.STACK_UNDERFLOW, "alt stack empty")
            s.append(self.alt.pop())
        elif op in (Op.OP_2DROP, Op.OP_VOTE):
            self.top(2)
            del s[-2:]
        elif op == Op.OP_2DUP:
            self.top(2)
            s.extend(s[-2:])
        elif op == Op.OP_IFDUP:
            if _truthy(self.top()):
                s.append(s[-1])
        elif op == Op.OP_DEPTH:
            s.append(encode_num(len(s)))
        elif op == Op.OP_DROP:
            self.pop()
        elif op == Op.OP_DUP:
            s.append(self.top())
        elif op == Op.OP_NIP:
            self.top(2)
            del s[-2]
        elif op == Op.OP_OVER:
            s.append(self.top(2))
        elif op == Op.OP_SWAP:
            self.top(2)
            s[-1], s[-2] = s[-2], s[-1]
        elif op == Op.OP_SIZE:
            s.append(encode_num(len(self.top())))
        elif op in (Op.OP_EQUAL, Op.OP_EQUALVERIFY):
            equal = self.pop() == self.pop()
            if op == Op.OP_EQUALVERIFY:
                if not equal:
                    raise ScriptError(ScriptReason.VERIFY_FAILED, "OP_EQUALVERIFY")
            else:
                s.append(_TRUE if equal else _FALSE)
        elif op in (Op.OP_NOT, Op.OP_0NOTEQUAL):
            n = _num(self.pop())
            s.append(_TRUE if (n == 0) == (op == Op.OP_NOT) else _FALSE)
        elif op in _HASHES:
            s.append(_HASHES[op](self.pop()))
        elif op in (Op.OP_CHECKSIG, Op.OP_CHECKSIGVERIFY):
            pubkey, sig = self.pop(), self.pop()
            ok = self._check_sig(sig, pubkey, script)
            if op == Op.OP_CHECKSIGVERIFY:
                if not ok:
                    raise ScriptError(ScriptReason.BAD_SIGNATURE, "OP_CHECKSIGVERIFY")
            else:
                s.append(_TRUE if ok else _FALSE)
        elif op in (Op.OP_CHECKMULTISIG, Op.OP_CHECKMULTISIGVERIFY):
            ok = self._check_multisig(script)
            if op == Op.OP_CHECKMULTISIGVERIFY:
                if not ok:
                    raise ScriptError(ScriptReason.BAD_SIGNATURE, "OP_CHECKMULTISIGVERIFY")
            else:
                s.append(_TRUE if ok else _FALSE)
        elif op == Op.OP_CHECKLOCKTIMEVERIFY:
            lock = _num(self.top(), 5)
            if lock < 0:
                raise ScriptError(ScriptReason.NEGATIVE_LOCKTIME)
            self.checker.check_lock_time(lock)
        else:
            name = Op(op).name if op in set(Op) else f"0x{op:02x}"
            raise ScriptError(ScriptReason.UNSUPPORTED_OPCODE, name)

    def _check_sig(self, sig: bytes, pubkey: bytes, script: bytes) -> bool:
        if sig and not is_strict_der(sig):              # BIP66, checked for every signature compared
            raise ScriptError(ScriptReason.BAD_SIGNATURE_ENCODING, sig.hex()[:24])
        return bool(sig) and self.checker.check_sig(sig, pubkey, script)

    def _check_multisig(self, script: bytes) -> bool:
        n_keys = _num(self.pop())
        if not 0 <= n_keys <= MAX_MULTISIG_KEYS:
            raise ScriptError(ScriptReason.MULTISIG_COUNT, f"{n_keys} keys")
        self.count_ops(n_keys)
        keys = [self.pop() for _ in range(n_keys)][::-1]          # in push order, as Bitcoin indexes them
        n_sigs = _num(self.pop())
        if not 0 <= n_sigs <= n_keys:
            raise ScriptError(ScriptReason.MULTISIG_COUNT, f"{n_sigs} signatures for {n_keys} keys")
        sigs = [self.pop() for _ in range(n_sigs)][::-1]
        self.pop()                     # the historic extra element (off-by-one in CHECKMULTISIG)
        # Bitcoin's loop: walk the keys once; a signature that matches the current key moves on to the next
        # signature; fail as soon as fewer keys than signatures remain
        isig = ikey = 0
        while isig < n_sigs:
            if self._check_sig(sigs[isig], keys[ikey], script):
                isig += 1
            ikey += 1
            if n_sigs - isig > n_keys - ikey:
                return False
        return True


def verify_script(script_sig: bytes, script_pubkey: bytes, checker: Checker, *, p2sh: bool = True) -> None:
    """Run a spend; raises ScriptError naming the first failure, returns None when the spend is valid."""
    m = _Machine(checker)
    m.run(script_sig)
    saved = list(m.stack)
    m.alt.clear()
    m.run(script_pubkey)
    if not m.stack or not _truthy(m.stack[-1]):
        raise ScriptError(ScriptReason.EVAL_FALSE)
    if p2sh and is_p2sh(script_pubkey):
        if not is_push_only(script_sig):
            raise ScriptError(ScriptReason.SIG_PUSHONLY)
        if not saved:
            raise ScriptError(ScriptReason.STACK_UNDERFLOW, "no redeem script")
        redeem = saved.pop()
        inner = _Machine(checker)
        inner.stack = saved
        inner.run(redeem)
        if not inner.stack or not _truthy(inner.stack[-1]):
            raise ScriptError(ScriptReason.EVAL_FALSE, "redeem script")


def verify_input(tx: Transaction, index: int, script_pubkey: bytes) -> None:
    """Check input `index` of `tx` against the output script it spends."""
    verify_script(tx.inputs[index].script_sig, script_pubkey, TxChecker(tx, index))
