"""Cross-chain settlement: a transfer is a path of HTLC legs on different chains sharing one payment hash; it ends
committed on every chain (every leg redeemed) or refunded on every one (no leg redeemed), never half.

A leg i pays `amount_i` from its payer to its payee on its chain, locked by
    S.htlc(payment_hash, payee pubkey, payer pubkey, lock_height_i)        (node/chain/script.py)
Leg i+1's payer is leg i's payee. The last leg's payee chose the secret (the preimage) and gave the hash to the
first payer. Two shapes, one protocol:
    pairwise (atomic swap)  X -> Y on chain A, Y -> X on chain B; X holds the secret
    relay                   S -> L on chain A, L -> R on chain B (L holds funds on both and keeps fee_per_hop)

Refund heights decrease along the path in time: with `setup_s` (lock a leg and see it in a block) and `margin_s`
(the longest a party may be unable to reach a chain and still be safe), the time left on leg i at the start is
    T_last = n * setup_s + 2 * margin_s,     T_i = T_(i+1) + margin_s + setup_s
and lock_height_i = height_i + ceil(T_i / block_time_i) on that chain's own clock of blocks. Every party applies
these rules to what it sees in blocks (watch.py); a party that cannot reach a chain decides nothing on it:
  lock      the payer of leg 0 locks at the start; the payer of leg i > 0 locks once leg i-1 is funded and
            still has margin_s more time left than leg i
  redeem    the last payee redeems once every leg is funded, every leg has at least margin_s left and its own
            leg at least REDEEM_BLOCKS, and hands the preimage back, off-chain, to every upstream payee (as
            Lightning's update_fulfill_htlc); the payee of leg i < last redeems as soon as it knows the preimage:
            handed back, or from the block that redeemed leg i+1
  refund    the payer of a funded leg refunds once its chain is at the lock height (the refund enters the next
            block)
So a preimage is revealed only while every upstream payee has margin_s to use it before its own leg can be
refunded (the hand-back matters when the last chain stalls: its redeem waits in a mempool while the other chains'
locks run on): the transfer is all-or-nothing as long as no party is cut off from a chain for longer than margin_s
(HTLC settlement cannot promise more: a payee who never comes back loses to the refund). A chain whose nodes are
down makes no blocks, so its locks do not run out meanwhile.

Pure: heights, the seen states and the time are passed in; building transactions needs only the coins given.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from node.chain import script as S
from node.chain.keys import Key
from node.chain.tx import OutPoint, TxOut
from node.chain.wallet import (
    htlc_redeem,
    htlc_refund,
    signature,
    spend_tx,
    with_script_sig,
)

from .watch import Seen, State

REDEEM_BLOCKS = 2


@dataclass(frozen=True)
class Leg:
    chain: str
    payer: str
    payee: str
    payer_pubkey: bytes
    payee_pubkey: bytes
    amount: int
    lock_height: int
    payment_hash: bytes

    @property
    def script(self) -> bytes:
        return S.htlc(self.payment_hash, self.payee_pubkey, self.payer_pubkey, self.lock_height)


@dataclass(frozen=True)
class Transfer:
    id: str
    payment_hash: bytes
    legs: tuple[Leg, ...]

    @property
    def chains(self) -> list[str]:
        return [leg.chain for leg in self.legs]

    @property
    def parties(self) -> set[str]:
        return {p for leg in self.legs for p in (leg.payer, leg.payee)}


@dataclass(frozen=True)
class Timing:
    setup_s: float          # time to lock one leg and see it in a block
    margin_s: float         # the longest a party may be cut off from a chain and stay safe

    def times(self, n: int) -> list[float]:
        """Seconds each leg has until its refund, at the start."""
        out = [n * self.setup_s + 2 * self.margin_s]
        for _ in range(n - 1):
            out.insert(0, out[0] + self.margin_s + self.setup_s)
        return out


class PlanError(ValueError):
    """A transfer that cannot be planned, naming why."""


@dataclass(frozen=True)
class Hop:
    chain: str
    payer: str
    payee: str
    payer_pubkey: bytes
    payee_pubkey: bytes


def plan(transfer_id: str, hops: list[Hop], amount: int, payment_hash: bytes, heights: dict[str, int],
         block_times: dict[str, float], timing: Timing, fee_per_hop: int = 0) -> Transfer:
    """A transfer of `amount` (what the last payee gets) along `hops`; each intermediary keeps fee_per_hop."""
    if not hops:
        raise PlanError("a transfer needs at least one hop")
    if amount <= 0 or fee_per_hop < 0:
        raise PlanError("the amount must be positive and the fee not negative")
    if len(payment_hash) != 32:
        raise PlanError("the payment hash is 32 bytes")
    for i, (a, b) in enumerate(itertools.pairwise(hops)):
        if a.payee != b.payer:
            raise PlanError(f"hop {i + 1} is paid by {b.payer}, but hop {i} pays {a.payee}")
    for h in hops:
        if h.chain not in heights or h.chain not in block_times:
            raise PlanError(f"no height or block time for chain {h.chain}")
    legs = []
    for i, (h, t) in enumerate(zip(hops, timing.times(len(hops)))):
        lock = heights[h.chain] + math.ceil(t / block_times[h.chain])
        legs.append(Leg(h.chain, h.payer, h.payee, h.payer_pubkey, h.payee_pubkey,
                        amount + (len(hops) - 1 - i) * fee_per_hop, lock, payment_hash))
    return Transfer(transfer_id, payment_hash, tuple(legs))


# --- the parties' rules -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    kind: str               # lock | redeem | refund
    leg: int
    preimage: bytes | None = None


@dataclass
class View:
    """What one party sees now: each chain's height (None when it cannot reach it) and block time, each leg's
    Seen, the preimage if the party holds it or was handed it, and the actions it already took (each is taken once)."""
    heights: dict[str, int | None]
    block_times: dict[str, float]
    seen: list[Seen]
    secret: bytes | None = None
    done: set = field(default_factory=set)

    def left_s(self, leg: Leg) -> float | None:
        h = self.heights.get(leg.chain)
        return None if h is None else (leg.lock_height - h) * self.block_times[leg.chain]


def decide(t: Transfer, party: str, view: View, timing: Timing) -> list[Action]:
    """The actions `party` takes now on transfer `t`."""
    out = []
    last = len(t.legs) - 1
    for i, leg in enumerate(t.legs):
        seen, height = view.seen[i], view.heights.get(leg.chain)
        if height is None:
            continue
        if leg.payer == party:
            if seen.state is State.NONE and ("lock", i) not in view.done and _may_lock(t, i, view, timing):
                out.append(Action("lock", i))
            if seen.state is State.FUNDED and height >= leg.lock_height and ("refund", i) not in view.done:
                out.append(Action("refund", i))
        if leg.payee == party and seen.state is State.FUNDED and ("redeem", i) not in view.done:
            if i == last:
                if view.secret is not None and _may_reveal(t, view, timing):
                    out.append(Action("redeem", i, view.secret))
            elif view.seen[i + 1].state is State.REDEEMED or view.secret is not None:
                out.append(Action("redeem", i, view.secret or view.seen[i + 1].preimage))
    return out


def _may_lock(t: Transfer, i: int, view: View, timing: Timing) -> bool:
    if i == 0:
        return True
    up, left_up, left = view.seen[i - 1], view.left_s(t.legs[i - 1]), view.left_s(t.legs[i])
    return up.state is State.FUNDED and left_up is not None and left is not None and \
        left_up >= left + timing.margin_s


def _may_reveal(t: Transfer, view: View, timing: Timing) -> bool:
    for leg, seen in zip(t.legs, view.seen):
        left = view.left_s(leg)
        if seen.state is not State.FUNDED or left is None or left < timing.margin_s:
            return False
    last = t.legs[-1]
    return last.lock_height - view.heights[last.chain] >= REDEEM_BLOCKS


# --- transactions -------------------------------------------------------------------------------------------------

def p2pkh_spend(key: Key, coins: list[tuple[OutPoint, int]], outputs: list[TxOut], fee: int):
    """A signed transaction spending `key`'s P2PKH coins [(outpoint, value)] to `outputs`, the change back."""
    total, need = sum(v for _, v in coins), sum(o.value for o in outputs) + fee
    if total < need:
        raise PlanError(f"{key.address} has {total} units in the coins given, {need} are needed")
    if total > need:
        outputs = [*outputs, TxOut(total - need, key.p2pkh_script)]
    tx = spend_tx([op for op, _ in coins], outputs)
    for i in range(len(coins)):
        sig = signature(tx, i, key, key.p2pkh_script)
        tx = with_script_sig(tx, i, S.push_data(sig) + S.push_data(key.pubkey))
    return tx


def lock_tx(leg: Leg, key: Key, coins: list[tuple[OutPoint, int]], fee: int):
    """The payer's transaction funding the leg's HTLC from its P2PKH coins, the change back."""
    try:
        return p2pkh_spend(key, coins, [TxOut(leg.amount, leg.script)], fee)
    except PlanError as e:
        raise PlanError(f"{leg.payer} on {leg.chain}: {e}") from None


def redeem_tx(leg: Leg, seen: Seen, key: Key, preimage: bytes, fee: int):
    tx = spend_tx([seen.outpoint], [TxOut(seen.value - fee, key.p2pkh_script)])
    return htlc_redeem(tx, 0, leg.script, key, preimage)


def refund_tx(leg: Leg, seen: Seen, key: Key, fee: int):
    tx = spend_tx([seen.outpoint], [TxOut(seen.value - fee, key.p2pkh_script)], lock_time=leg.lock_height)
    return htlc_refund(tx, 0, leg.script, key)


def pick_coins(coins: list[tuple[OutPoint, int]], need: int) -> list[tuple[OutPoint, int]]:
    """The fewest of the largest coins that cover `need` (all of them when they do not)."""
    picked, total = [], 0
    for op, v in sorted(coins, key=lambda c: -c[1]):
        if total >= need:
            break
        picked.append((op, v))
        total += v
    return picked


# --- outcome ------------------------------------------------------------------------------------------------------

COMMITTED, REFUNDED, PENDING, HALF = "committed", "refunded", "pending", "half"


def outcome(seen: list[Seen]) -> str:
    """committed (every leg redeemed); half (a leg redeemed and another refunded, or never funded while no leg
    is locked any more: the failure this protocol rules out); refunded (the first leg refunded and no leg
    redeemed or still locked: nothing moved); else pending."""
    states = [s.state for s in seen]
    if all(s is State.REDEEMED for s in states):
        return COMMITTED
    if State.REDEEMED in states:
        if State.REFUNDED in states or (State.NONE in states and State.FUNDED not in states):
            return HALF
        return PENDING
    if states[0] is State.REFUNDED and State.FUNDED not in states:
        return REFUNDED
    return PENDING
