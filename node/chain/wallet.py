"""A wallet over the chain's UTXO set: keys, balance, signed sends, votes, multisig and HTLC spends.

    w = Wallet(params, [Key.from_seed("alice")])
    w.balance(chain)                                  # Balance(spendable, immature, burned)
    tx = w.send(chain, decode_address(addr), 10 * UNITS_PER_PKT, fee=1000)
    chain.accept_tx(tx, now)

Signing uses SIGHASH_ALL over the legacy signature hash. The scriptSigs:
  p2pkh     <sig> <pubkey>                p2pk  <sig>
  multisig  OP_0 <sig>... [<redeem script> behind p2sh], signatures in the order of the keys
  htlc      redeem: <sig> <preimage> OP_1; refund: <sig> OP_0 with nLockTime >= the lock height and the input's
            sequence below final
A vote rides on the wallet's outputs (script.with_vote); `vote` moves all the wallet's coins onto one voting output
so their whole value counts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from . import script as S
from .coins import Coin
from .keys import Key
from .params import ChainParams
from .tx import SEQUENCE_FINAL, SIGHASH_ALL, OutPoint, Transaction, TxIn, TxOut


@dataclass(frozen=True)
class Balance:
    spendable: int          # mature, unburned, not spent by a mempool transaction
    immature: int           # coinbase outputs younger than the maturity
    burned: int             # steward payments past the burn depth

    @property
    def total(self) -> int:
        return self.spendable + self.immature


class WalletError(ValueError):
    """A send the wallet cannot make (not enough money, unknown key, ...)."""


def signature(tx: Transaction, index: int, key: Key, script_code: bytes, hash_type: int = SIGHASH_ALL) -> bytes:
    """DER signature + hash-type byte over input `index` (script_code = the script being satisfied)."""
    return key.sign(tx.signature_hash(index, script_code, hash_type)) + bytes([hash_type])


def with_script_sig(tx: Transaction, index: int, script_sig: bytes) -> Transaction:
    inputs = list(tx.inputs)
    inputs[index] = replace(inputs[index], script_sig=bytes(script_sig))
    return replace(tx, inputs=tuple(inputs))


def multisig_script_sig(sigs: list[bytes], redeem_script: bytes | None = None) -> bytes:
    """OP_0 (CHECKMULTISIG's extra element) and the signatures; the redeem script last for a P2SH output."""
    out = bytes([S.Op.OP_0]) + b"".join(S.push_data(s) for s in sigs)
    return out + S.push_data(redeem_script) if redeem_script is not None else out


def sign_multisig(tx: Transaction, index: int, redeem_script: bytes, keys: list[Key], *,
                  p2sh: bool = True) -> Transaction:
    """Sign input `index` with `keys` (any subset; the signatures are ordered as the script's keys)."""
    kind, fields = S.classify(redeem_script)
    if kind != "multisig":
        raise WalletError("not a multisig script")
    order = {pk: i for i, pk in enumerate(fields[1])}
    signers = sorted((k for k in keys if k.pubkey in order), key=lambda k: order[k.pubkey])
    sigs = [signature(tx, index, k, redeem_script) for k in signers]
    return with_script_sig(tx, index, multisig_script_sig(sigs, redeem_script if p2sh else None))


def htlc_redeem(tx: Transaction, index: int, htlc_script: bytes, key: Key, preimage: bytes) -> Transaction:
    sig = signature(tx, index, key, htlc_script)
    return with_script_sig(tx, index, S.push_data(sig) + S.push_data(preimage) + bytes([S.Op.OP_1]))


def htlc_refund(tx: Transaction, index: int, htlc_script: bytes, key: Key) -> Transaction:
    sig = signature(tx, index, key, htlc_script)
    return with_script_sig(tx, index, S.push_data(sig) + bytes([S.Op.OP_0]))


def htlc_lock(chain, payment_hash: bytes, redeem_pubkey: bytes, refund_pubkey: bytes,
              lock_blocks: int | None = None) -> tuple[bytes, int]:
    """An HTLC output script refundable `lock_blocks` (default: the params' lock length) after the next block;
    returns (script, lock height)."""
    lock = chain.height + 1 + (chain.params.lock_blocks if lock_blocks is None else lock_blocks)
    return S.htlc(payment_hash, redeem_pubkey, refund_pubkey, lock), lock


def spend_tx(prevouts: list[OutPoint], outputs: list[TxOut], *, lock_time: int = 0) -> Transaction:
    """An unsigned transaction; with a lock time its inputs get a non-final sequence so the lock applies."""
    seq = SEQUENCE_FINAL - 1 if lock_time else SEQUENCE_FINAL
    return Transaction(tuple(TxIn(p, b"", seq) for p in prevouts), tuple(outputs), lock_time=lock_time)


class Wallet:
    def __init__(self, params: ChainParams, keys: list[Key] | None = None):
        self.params = params
        self.keys: list[Key] = list(keys or [])

    def add_key(self, key: Key) -> None:
        self.keys.append(key)

    @property
    def script(self) -> bytes:
        """Where this wallet receives (its first key's P2PKH)."""
        return self.keys[0].p2pkh_script

    @property
    def address(self) -> str:
        return self.keys[0].address

    def key_for(self, script_pubkey: bytes) -> Key | None:
        kind, fields = S.classify(script_pubkey)
        for k in self.keys:
            if (kind == "p2pkh" and fields[0] == k.pubkey_hash) or (kind == "p2pk" and fields[0] == k.pubkey):
                return k
        return None

    def coins(self, chain) -> list[tuple[OutPoint, Coin]]:
        """The wallet's unspent outputs on the chain that no mempool transaction spends."""
        return [(op, c) for op, c in chain.iter_coins()
                if self.key_for(c.script) is not None and op not in chain.mempool.spenders]

    def _spendable(self, coin: Coin, height: int) -> str:
        if coin.coinbase and height - coin.height < self.params.coinbase_maturity:
            return "immature"
        if coin.steward and height - coin.height > self.params.steward_burn_depth:
            return "burned"
        return "spendable"

    def balance(self, chain) -> Balance:
        sums = {"spendable": 0, "immature": 0, "burned": 0}
        for _, c in self.coins(chain):
            sums[self._spendable(c, chain.height + 1)] += c.value
        return Balance(**sums)

    def sign(self, tx: Transaction, coins: list[Coin]) -> Transaction:
        """Sign every input whose coin pays one of the wallet's keys (p2pkh or p2pk)."""
        for i, coin in enumerate(coins):
            key = self.key_for(coin.script)
            if key is None:
                raise WalletError(f"input {i} does not pay a key of this wallet")
            sig = signature(tx, i, key, coin.script)
            kind, _ = S.classify(coin.script)
            tx = with_script_sig(tx, i, S.push_data(sig) + (S.push_data(key.pubkey) if kind == "p2pkh" else b""))
        return tx

    def send(self, chain, to_script: bytes, amount: int, fee: int, *, change_script: bytes | None = None,
             vote_for: bytes | None = None, vote_against: bytes | None = None) -> Transaction:
        """A signed transaction paying `amount` to `to_script`, the change back to the wallet (carrying a vote
        if one is given)."""
        if amount <= 0 or fee < 0:
            raise WalletError("amount must be positive and the fee not negative")
        height = chain.height + 1
        usable = sorted(((op, c) for op, c in self.coins(chain) if self._spendable(c, height) == "spendable"),
                        key=lambda oc: -oc[1].value)
        picked, total = [], 0
        for op, c in usable:
            if total >= amount + fee:
                break
            picked.append((op, c))
            total += c.value
        if total < amount + fee:
            raise WalletError(f"needs {amount + fee} units, {total} spendable")
        outputs = [TxOut(amount, bytes(to_script))]
        change = total - amount - fee
        base = change_script or self.script
        if vote_for or vote_against:
            base = S.with_vote(base, vote_for, vote_against)
        if change:
            outputs.append(TxOut(change, base))
        tx = spend_tx([op for op, _ in picked], outputs)
        return self.sign(tx, [c for _, c in picked])

    def vote(self, chain, *, vote_for: bytes | None = None, vote_against: bytes | None = None,
             fee: int = 0) -> Transaction:
        """Move every spendable coin onto one output of this wallet that carries the vote."""
        height = chain.height + 1
        picked = [(op, c) for op, c in self.coins(chain) if self._spendable(c, height) == "spendable"]
        total = sum(c.value for _, c in picked)
        if total <= fee:
            raise WalletError("nothing to vote with")
        tx = spend_tx([op for op, _ in picked], [TxOut(total - fee, S.with_vote(self.script, vote_for,
                                                                                 vote_against))])
        return self.sign(tx, [c for _, c in picked])
