"""The script interpreter on this chain's templates, positive and negative: P2PKH, P2PK, 3-of-5 multisig (bare and
P2SH), HTLC redeem and refund, the OP_VOTE suffix and pktd's vote extraction, and the interpreter's own rules."""
from __future__ import annotations

import pytest

from node.chain import params as P
from node.chain import script as S
from node.chain.interpreter import ScriptError, ScriptReason, TxChecker, is_strict_der, verify_script
from node.chain.keys import Key
from node.chain.tx import SEQUENCE_FINAL, OutPoint, Transaction, TxIn, TxOut
from node.chain.wallet import (htlc_redeem, htlc_refund, multisig_script_sig, sign_multisig, signature, spend_tx,
                               with_script_sig)

KEYS = [Key.from_seed(f"script test {i}") for i in range(5)]
PREV = OutPoint(b"\x11" * 32, 0)


def _spend(lock_time=0):
    return spend_tx([PREV], [TxOut(1000, KEYS[0].p2pkh_script)], lock_time=lock_time)


def _run(tx, script_pubkey):
    verify_script(tx.inputs[0].script_sig, script_pubkey, TxChecker(tx, 0))


def _fails(tx, script_pubkey, reason=None):
    with pytest.raises(ScriptError) as e:
        _run(tx, script_pubkey)
    if reason is not None:
        assert e.value.reason is reason, e.value
    return e.value


# --- pay to pubkey (hash) -----------------------------------------------------------------------------------------

def test_p2pkh():
    k = KEYS[0]
    tx = _spend()
    good = with_script_sig(tx, 0, S.push_data(signature(tx, 0, k, k.p2pkh_script)) + S.push_data(k.pubkey))
    _run(good, k.p2pkh_script)
    other = KEYS[1]
    wrong_key = with_script_sig(tx, 0, S.push_data(signature(tx, 0, other, k.p2pkh_script)) +
                                S.push_data(other.pubkey))
    _fails(wrong_key, k.p2pkh_script, ScriptReason.VERIFY_FAILED)          # hash of the pubkey differs
    forged = with_script_sig(tx, 0, S.push_data(signature(tx, 0, other, k.p2pkh_script)) + S.push_data(k.pubkey))
    _fails(forged, k.p2pkh_script, ScriptReason.EVAL_FALSE)                # right pubkey, wrong signer
    _fails(tx, k.p2pkh_script, ScriptReason.STACK_UNDERFLOW)               # no scriptSig


def test_p2pk_and_signature_covers_the_outputs():
    k = KEYS[2]
    script = S.p2pk(k.pubkey)
    tx = _spend()
    signed = with_script_sig(tx, 0, S.push_data(signature(tx, 0, k, script)))
    _run(signed, script)
    moved = Transaction(signed.inputs, (TxOut(999, KEYS[0].p2pkh_script),))
    _fails(moved, script, ScriptReason.EVAL_FALSE)


def test_signature_encoding_is_strict_der():
    k = KEYS[0]
    tx = _spend()
    sig = signature(tx, 0, k, k.p2pkh_script)
    assert is_strict_der(sig)
    padded = sig[:3] + bytes([sig[3] + 1, 0]) + sig[4:]          # a needless leading zero in R
    padded = bytes([0x30, len(padded) - 3]) + padded[2:]
    assert not is_strict_der(padded)
    bad = with_script_sig(tx, 0, S.push_data(padded) + S.push_data(k.pubkey))
    _fails(bad, k.p2pkh_script, ScriptReason.BAD_SIGNATURE_ENCODING)


# --- multisig: the steward's 3-of-5 ---------------------------------------------------------------------------------

REDEEM = S.multisig(3, [k.pubkey for k in KEYS])


@pytest.mark.parametrize("p2sh", [False, True])
def test_multisig_3_of_5(p2sh):
    script_pubkey = S.p2sh(REDEEM) if p2sh else REDEEM
    tx = _spend()
    for signers in ([0, 1, 2], [0, 2, 4], [2, 3, 4], [0, 1, 2, 3]):
        _run(sign_multisig(tx, 0, REDEEM, [KEYS[i] for i in signers], p2sh=p2sh), script_pubkey)


@pytest.mark.parametrize("p2sh", [False, True])
def test_multisig_two_signatures_are_not_enough(p2sh):
    script_pubkey = S.p2sh(REDEEM) if p2sh else REDEEM
    tx = _spend()
    _fails(sign_multisig(tx, 0, REDEEM, KEYS[:2], p2sh=p2sh), script_pubkey)
    # two good signatures and an empty one in the third place: CHECKMULTISIG answers false
    sigs = [signature(tx, 0, k, REDEEM) for k in KEYS[:2]] + [b""]
    _fails(with_script_sig(tx, 0, multisig_script_sig(sigs, REDEEM if p2sh else None)), script_pubkey,
           ScriptReason.EVAL_FALSE)


def test_multisig_signatures_must_follow_key_order_and_be_distinct():
    tx = _spend()
    sigs = [signature(tx, 0, KEYS[i], REDEEM) for i in (2, 0, 1)]
    _fails(with_script_sig(tx, 0, multisig_script_sig(sigs)), REDEEM, ScriptReason.EVAL_FALSE)
    same = [signature(tx, 0, KEYS[0], REDEEM)] * 3
    _fails(with_script_sig(tx, 0, multisig_script_sig(same)), REDEEM, ScriptReason.EVAL_FALSE)


def test_p2sh_needs_the_right_redeem_script_and_push_only():
    tx = _spend()
    other = S.multisig(1, [KEYS[0].pubkey])
    signed = sign_multisig(tx, 0, other, KEYS[:1])
    _fails(signed, S.p2sh(REDEEM), ScriptReason.EVAL_FALSE)
    non_push = with_script_sig(tx, 0, bytes([S.Op.OP_NOP]) + signed.inputs[0].script_sig)
    _fails(non_push, S.p2sh(other), ScriptReason.SIG_PUSHONLY)


def test_the_steward_keys_spend_the_steward_script():
    steward = P.steward_keys()
    tx = _spend()
    _run(sign_multisig(tx, 0, P.steward_redeem_script(), steward[1:4]), P.MAINNET.initial_steward_script)
    _fails(sign_multisig(tx, 0, P.steward_redeem_script(), steward[:2]), P.MAINNET.initial_steward_script)


# --- HTLC -----------------------------------------------------------------------------------------------------------

PREIMAGE = b"the secret that settles the payment"
LOCK = 120
HTLC = S.htlc(S.htlc_hash(PREIMAGE), KEYS[0].pubkey, KEYS[1].pubkey, LOCK)


def test_htlc_template_is_recognised():
    kind, (h, redeem, refund, height) = S.classify(HTLC)
    assert kind == "htlc" and h == S.htlc_hash(PREIMAGE) and (redeem, refund, height) == (KEYS[0].pubkey,
                                                                                          KEYS[1].pubkey, LOCK)


def test_htlc_redeem_with_the_preimage():
    tx = _spend()
    _run(htlc_redeem(tx, 0, HTLC, KEYS[0], PREIMAGE), HTLC)


def test_htlc_redeem_with_a_wrong_preimage_fails():
    tx = _spend()
    _fails(htlc_redeem(tx, 0, HTLC, KEYS[0], PREIMAGE + b"!"), HTLC, ScriptReason.VERIFY_FAILED)


def test_htlc_redeem_needs_the_redeem_key():
    tx = _spend()
    _fails(htlc_redeem(tx, 0, HTLC, KEYS[1], PREIMAGE), HTLC, ScriptReason.EVAL_FALSE)


def test_htlc_refund_only_after_the_lock_height():
    _run(htlc_refund(_spend(lock_time=LOCK), 0, HTLC, KEYS[1]), HTLC)
    _run(htlc_refund(_spend(lock_time=LOCK + 50), 0, HTLC, KEYS[1]), HTLC)
    _fails(htlc_refund(_spend(lock_time=LOCK - 1), 0, HTLC, KEYS[1]), HTLC, ScriptReason.UNSATISFIED_LOCKTIME)
    _fails(htlc_refund(_spend(lock_time=0), 0, HTLC, KEYS[1]), HTLC, ScriptReason.UNSATISFIED_LOCKTIME)
    # a final sequence switches the lock time off, so CLTV refuses it
    final = Transaction((TxIn(PREV, b"", SEQUENCE_FINAL),), (TxOut(1000, b"\x51"),), lock_time=LOCK)
    _fails(htlc_refund(final, 0, HTLC, KEYS[1]), HTLC, ScriptReason.UNSATISFIED_LOCKTIME)
    # a unix-time lock does not satisfy a height lock
    _fails(htlc_refund(_spend(lock_time=S.LOCKTIME_THRESHOLD + 5), 0, HTLC, KEYS[1]), HTLC,
           ScriptReason.UNSATISFIED_LOCKTIME)
    _fails(htlc_refund(_spend(lock_time=LOCK), 0, HTLC, KEYS[0]), HTLC, ScriptReason.EVAL_FALSE)


# --- OP_VOTE ---------------------------------------------------------------------------------------------------------

CAND_A = KEYS[3].p2pkh_script
CAND_B = KEYS[4].p2pkh_script


def test_vote_suffix_executes_as_2drop():
    k = KEYS[0]
    voting = S.with_vote(k.p2pkh_script, CAND_A, CAND_B)
    assert voting.endswith(bytes([S.Op.OP_VOTE]))
    tx = _spend()
    good = with_script_sig(tx, 0, S.push_data(signature(tx, 0, k, voting)) + S.push_data(k.pubkey))
    _run(good, voting)
    wrong = with_script_sig(tx, 0, S.push_data(signature(tx, 0, KEYS[1], voting)) + S.push_data(k.pubkey))
    _fails(wrong, voting, ScriptReason.EVAL_FALSE)
    # OP_VOTE needs two elements under it
    _fails(with_script_sig(tx, 0, b""), bytes([S.Op.OP_1, S.Op.OP_VOTE]), ScriptReason.STACK_UNDERFLOW)
    assert S.classify(voting) == ("p2pkh", (k.pubkey_hash,))


def test_vote_extraction_follows_pktd():
    base = KEYS[0].p2pkh_script
    assert S.votes(S.with_vote(base, CAND_A, CAND_B)) == (CAND_A, CAND_B)
    assert S.votes(S.with_vote(base, CAND_A, None)) == (CAND_A, None)
    assert S.votes(S.with_vote(base, None, CAND_B)) == (None, CAND_B)
    assert S.votes(base) == (None, None)
    long = b"\x51" * 80                                       # 80 bytes: too long to be a candidate
    assert S.votes(base + S.push_data(long) + S.push_data(CAND_B) + bytes([S.Op.OP_VOTE])) == (None, None)
    non_canonical = base + bytes([S.Op.OP_PUSHDATA1, len(CAND_A)]) + CAND_A + S.push_data(CAND_B) + \
        bytes([S.Op.OP_VOTE])
    assert S.votes(non_canonical) == (None, None)
    assert S.votes(bytes([S.Op.OP_0, S.Op.OP_VOTE])) == (None, None)      # too short
    first_valid = S.with_vote(S.with_vote(base, CAND_A, None), CAND_B, CAND_B)
    assert S.votes(first_valid) == (CAND_A, None)
    with pytest.raises(ValueError):
        S.with_vote(base, long, None)


# --- interpreter rules ------------------------------------------------------------------------------------------------

def _plain(script_sig, script_pubkey):
    tx = _spend()
    verify_script(script_sig, script_pubkey, TxChecker(tx, 0))


def test_conditionals_and_failures():
    Op = S.Op
    _plain(b"", bytes([Op.OP_1, Op.OP_IF, Op.OP_1, Op.OP_ELSE, Op.OP_0, Op.OP_ENDIF]))
    with pytest.raises(ScriptError, match="EVAL_FALSE"):
        _plain(b"", bytes([Op.OP_0, Op.OP_IF, Op.OP_1, Op.OP_ELSE, Op.OP_0, Op.OP_ENDIF]))
    with pytest.raises(ScriptError, match="UNBALANCED"):
        _plain(b"", bytes([Op.OP_1, Op.OP_IF, Op.OP_1]))
    with pytest.raises(ScriptError, match="UNBALANCED"):
        _plain(b"", bytes([Op.OP_1, Op.OP_ENDIF]))
    with pytest.raises(ScriptError, match="OP_RETURN"):
        _plain(b"", bytes([Op.OP_1, Op.OP_RETURN]))
    with pytest.raises(ScriptError, match="DISABLED"):                  # even where it is not executed
        _plain(b"", bytes([Op.OP_1, Op.OP_0, Op.OP_IF, Op.OP_CAT, Op.OP_ENDIF]))
    with pytest.raises(ScriptError, match="UNSUPPORTED"):
        _plain(b"", bytes([Op.OP_1, 0x93]))                              # OP_ADD is not implemented here
    with pytest.raises(ScriptError, match="BAD_FORMAT"):
        _plain(b"", bytes([5, 1, 2]))                                   # push past the end
    with pytest.raises(ScriptError, match="PUSH_SIZE"):
        _plain(b"", S.push_data(b"x" * 521))
    with pytest.raises(ScriptError, match="TOO_MANY_OPS"):
        _plain(b"", bytes([Op.OP_1]) + bytes([Op.OP_NOP]) * 202)
    with pytest.raises(ScriptError, match="NEGATIVE_LOCKTIME"):
        _plain(b"", bytes([Op.OP_1NEGATE, Op.OP_CHECKLOCKTIMEVERIFY]))
    _plain(S.push_data(b"abc"), bytes([Op.OP_SIZE]) + S.push_int(3) + bytes([Op.OP_EQUALVERIFY, Op.OP_DROP, Op.OP_1]))
    _plain(b"", bytes([Op.OP_0, Op.OP_NOT]))
    with pytest.raises(ScriptError, match="EVAL_FALSE"):
        _plain(b"", S.push_data(b"\x80"))                                # negative zero is false


def test_numbers_round_trip():
    for n in (0, 1, -1, 127, 128, -128, 255, 256, 2 ** 31 - 1, -(2 ** 31 - 1), 2 ** 39):
        assert S.decode_num(S.encode_num(n)) == n
    assert S.encode_num(128) == b"\x80\x00" and S.encode_num(-1) == b"\x81"
