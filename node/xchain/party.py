"""A settlement party: its keys, its own way to each chain, its watches, its transfers; one `step` looks at every
chain it can reach, applies the rules (settlement.decide) and sends what they call for.

    p = Party("x1", key, {"alpha": access_a, "beta": access_b}, block_times, timing, fee=1000)
    p.add(transfer, secret=None)
    p.step(now)                              # any number of times; a chain it cannot reach is skipped

`access` objects are the chain, passed in (the testbed's go over the mesh from the party's node; tests use
in-process chains):
    tip() -> int                             height of the main chain (OSError when unreachable)
    block_at(height) -> Block
    coins(address) -> [(OutPoint, value)]    spendable P2PKH coins, mempool spends left out
    send(tx) -> None                         into the mempool (ValueError: refused, with the reason)
The last payee hands the preimage back when it redeems: `handed_back` [(transfer id, preimage)] is what it
sends to the transfer's other parties, `learn` what they do with it (the driver carries it between them).
A transaction the party sent is sent again every `resend_s` until its effect is in a block (a chain whose nodes
restarted forgot its mempool); coins a pending lock spends are kept out of the next ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from node.chain.keys import Key
from node.chain.script import htlc_hash

from .settlement import (
    Action,
    PlanError,
    Timing,
    Transfer,
    View,
    decide,
    lock_tx,
    pick_coins,
    redeem_tx,
    refund_tx,
)
from .watch import ChainWatch, State

MAX_BLOCKS_PER_STEP = 200


@dataclass
class _Held:
    transfer: Transfer
    secret: bytes | None
    done: set = field(default_factory=set)


@dataclass
class _Pending:
    action: Action
    transfer: str
    chain: str
    tx: object
    sent_at: float
    spends: list


class Party:
    def __init__(self, name: str, key: Key, access: dict, block_times: dict[str, float], timing: Timing,
                 fee: int, resend_s: float = 4.0):
        self.name, self.key, self.access = name, key, access
        self.block_times, self.timing, self.fee, self.resend_s = block_times, timing, fee, resend_s
        self.watches = {c: ChainWatch() for c in access}
        self.transfers: dict[str, _Held] = {}
        self.pending: list[_Pending] = []
        self.reserved: set = set()
        self.errors: list[str] = []          # what it could not do (a refused transaction, no coins), in order
        self.resend_refusals = 0
        self.handed_back: list[tuple[str, bytes]] = []

    def add(self, transfer: Transfer, secret: bytes | None = None) -> None:
        missing = set(transfer.chains) - set(self.access)
        if missing:
            raise PlanError(f"{self.name} has no way to chain(s) {', '.join(sorted(missing))}")
        for leg in transfer.legs:
            self.watches[leg.chain].watch(leg.script)
        self.transfers[transfer.id] = _Held(transfer, secret)

    def learn(self, transfer_id: str, preimage: bytes) -> bool:
        """A preimage handed back; False (ignored) when it does not open the transfer's hash."""
        held = self.transfers.get(transfer_id)
        if held is None or htlc_hash(preimage) != held.transfer.payment_hash:
            return False
        held.secret = preimage
        return True

    def seen(self, transfer_id: str) -> list:
        t = self.transfers[transfer_id].transfer
        return [self.watches[leg.chain].seen(leg.script) for leg in t.legs]

    # --- one round ----------------------------------------------------------------------------------------------
    def step(self, now: float) -> dict[str, int | None]:
        heights = {c: self._sync(c) for c in self.access}
        for held in self.transfers.values():
            t = held.transfer
            view = View(heights, self.block_times, self.seen(t.id), held.secret, held.done)
            for action in decide(t, self.name, view, self.timing):
                held.done.add((action.kind, action.leg))
                self._act(t, action, view, now)
        self._resend(heights, now)
        return heights

    def _sync(self, chain: str) -> int | None:
        """Feed the chain's new main-chain blocks to its watch; its height, or None when unreachable."""
        acc, w = self.access[chain], self.watches[chain]
        try:
            tip = acc.tip()
            end = min(tip, w.height + MAX_BLOCKS_PER_STEP)
            while w.height < end:
                if not w.feed(w.height + 1, acc.block_at(w.height + 1)):
                    w.rewind(w.height - 1)          # a reorg: step back until the blocks connect again
            return w.height
        except OSError:
            return None

    def _act(self, t: Transfer, action: Action, view: View, now: float) -> None:
        leg = t.legs[action.leg]
        spends = []
        try:
            if action.kind == "lock":
                free = [c for c in self.access[leg.chain].coins(self.key.address) if c[0] not in self.reserved]
                spends = pick_coins(free, leg.amount + self.fee)
                tx = lock_tx(leg, self.key, spends, self.fee)
            elif action.kind == "redeem":
                tx = redeem_tx(leg, view.seen[action.leg], self.key, action.preimage, self.fee)
            else:
                tx = refund_tx(leg, view.seen[action.leg], self.key, self.fee)
        except (OSError, PlanError) as e:
            self.errors.append(f"{t.id} {action.kind} leg {action.leg}: {e}")
            view.done.discard((action.kind, action.leg))      # try again next round
            return
        self.reserved.update(op for op, _ in spends)
        if action.kind == "redeem" and action.leg == len(t.legs) - 1:
            self.handed_back.append((t.id, action.preimage))
        p = _Pending(action, t.id, leg.chain, tx, now, [op for op, _ in spends])
        self.pending.append(p)
        self._send(p, now)

    def _send(self, p: _Pending, now: float, again: bool = False) -> None:
        p.sent_at = now
        try:
            self.access[p.chain].send(p.tx)
        except (OSError, ValueError) as e:
            if again:               # the mempool still has it, or a block took it meanwhile: expected
                self.resend_refusals += 1
            else:
                self.errors.append(f"{p.transfer} {p.action.kind} leg {p.action.leg}: {e}")

    def _resend(self, heights: dict, now: float) -> None:
        keep = []
        for p in self.pending:
            seen = self.seen(p.transfer)[p.action.leg]
            settled = seen.state is not State.NONE if p.action.kind == "lock" else \
                seen.state in (State.REDEEMED, State.REFUNDED)
            if settled:
                self.reserved.difference_update(p.spends)
                continue
            keep.append(p)
            if heights.get(p.chain) is not None and now - p.sent_at >= self.resend_s:
                self._send(p, now, again=True)
        self.pending = keep
