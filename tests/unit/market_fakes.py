"""An in-memory PKT chain for the market tests: a ChainView with HTLC outputs, a mempool, balances and reorgs.

It follows the HTLC rules of node/market/chain_view.py: the claim path is valid at any height while the output is
unspent, the refund path from ``refund_height``. The real chain replaces it in the chain part of issue 16.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from node.market.chain_view import CLAIMED, OPEN, REFUNDED, Htlc


@dataclass(frozen=True)
class Fund:
    txid: str
    payer: bytes
    amount: int
    hash: bytes
    pay_to: bytes
    refund_to: bytes
    refund_height: int


@dataclass(frozen=True)
class Claim:
    outpoint: str
    preimage: bytes


@dataclass(frozen=True)
class Refund:
    outpoint: str


class FakeChain:
    def __init__(self, balances: dict):
        self.genesis_balances = dict(balances)
        self.blocks = [(self._hash(0, 0), ())]          # (hash, txs); block 0 is the genesis
        self.mempool: list = []
        self._salt = 0
        self._txn = 0
        self._states: dict = {}

    @staticmethod
    def _hash(height: int, salt: int) -> bytes:
        return hashlib.sha256(f"block {height} {salt}".encode()).digest()

    # -- ChainView ----------------------------------------------------------------------------------------------

    def height(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, height: int):
        return self.blocks[height][0] if 0 <= height < len(self.blocks) else None

    def htlc(self, outpoint: str, at: int | None = None):
        return self.state_at(self.height() if at is None else at)[0].get(outpoint)

    def htlcs_for(self, hash: bytes, at: int | None = None) -> list:
        return [h for h in self.state_at(self.height() if at is None else at)[0].values() if h.hash == hash]

    # -- wallet -------------------------------------------------------------------------------------------------

    def fund_htlc(self, payer: bytes, amount: int, hash: bytes, pay_to: bytes, refund_to: bytes,
                  refund_height: int) -> str:
        self._txn += 1
        tx = Fund(f"{self._txn:064x}", payer, amount, hash, pay_to, refund_to, refund_height)
        self.mempool.append(tx)
        return f"{tx.txid}:0"

    def claim(self, outpoint: str, preimage: bytes) -> None:
        self.mempool.append(Claim(outpoint, preimage))

    def refund(self, outpoint: str) -> None:
        self.mempool.append(Refund(outpoint))

    def balance(self, key: bytes) -> int:
        return self.state_at(self.height())[1].get(key, 0)

    # -- blocks -------------------------------------------------------------------------------------------------

    def mine(self, n: int = 1, include: bool = True) -> None:
        """Mine ``n`` blocks; each takes every mempool transaction that is valid at its height (if include)."""
        for _ in range(n):
            height = len(self.blocks)
            txs = []
            if include:
                htlcs, balances = self.state_at(height - 1)
                htlcs, balances = dict(htlcs), dict(balances)
                for tx in self.mempool:
                    if self._apply(tx, height, htlcs, balances):
                        txs.append(tx)
            self.blocks.append((self._hash(height, self._salt), tuple(txs)))
            self.mempool = [tx for tx in self.mempool if tx not in txs and self._may_become_valid(tx)]

    def reorg(self, depth: int, empty_blocks: int = 0, drop: str | None = None) -> None:
        """Replace the last ``depth`` blocks by a branch one block longer: ``empty_blocks`` blocks without the
        orphaned transactions first, then blocks that take them again. ``drop`` ("fund" or "claim") loses the
        orphaned transactions of that kind for good (a payer that double-spent its funding, a censored claim)."""
        depth = min(depth, self.height())
        kinds = {"fund": Fund, "claim": Claim, None: ()}[drop]
        orphaned = [tx for _, txs in self.blocks[len(self.blocks) - depth:] for tx in txs
                    if not isinstance(tx, kinds)]
        del self.blocks[len(self.blocks) - depth:]
        self._states = {}
        self._salt += 1
        self.mempool = orphaned + [tx for tx in self.mempool if not isinstance(tx, kinds)]
        empty = min(empty_blocks, depth + 1)
        self.mine(empty, include=False)
        self.mine(depth + 1 - empty)

    def rewind(self, blocks: int) -> None:
        """Drop the last ``blocks`` blocks (a node that switched to a shorter branch, for a while)."""
        del self.blocks[len(self.blocks) - blocks:]
        self._states = {}

    def state_at(self, height: int):
        """(htlcs by outpoint, balances) after block ``height`` of the best chain."""
        key = (self._salt, height, self.blocks[min(height, self.height())][0])
        if key not in self._states:
            htlcs, balances = {}, dict(self.genesis_balances)
            for h, (_, txs) in enumerate(self.blocks[:height + 1]):
                for tx in txs:
                    self._apply(tx, h, htlcs, balances)
            self._states[key] = (htlcs, balances)
        return self._states[key]

    @staticmethod
    def _apply(tx, height: int, htlcs: dict, balances: dict) -> bool:
        if isinstance(tx, Fund):
            outpoint = f"{tx.txid}:0"
            if outpoint in htlcs or balances.get(tx.payer, 0) < tx.amount:
                return False
            balances[tx.payer] -= tx.amount
            htlcs[outpoint] = Htlc(outpoint, tx.amount, tx.hash, tx.pay_to, tx.refund_to, tx.refund_height, height)
            return True
        h = htlcs.get(tx.outpoint)
        if h is None or h.state != OPEN:
            return False
        if isinstance(tx, Claim):
            if hashlib.sha256(tx.preimage).digest() != h.hash:
                return False
            balances[h.pay_to] = balances.get(h.pay_to, 0) + h.amount
            htlcs[tx.outpoint] = replace(h, state=CLAIMED, preimage=tx.preimage, spent_height=height)
            return True
        if height < h.refund_height:
            return False
        balances[h.refund_to] = balances.get(h.refund_to, 0) + h.amount
        htlcs[tx.outpoint] = replace(h, state=REFUNDED, spent_height=height)
        return True

    def _may_become_valid(self, tx) -> bool:
        """Keep a transaction in the mempool while it could still be mined (its output unspent or unseen)."""
        if isinstance(tx, Fund):
            return False
        h = self.state_at(self.height())[0].get(tx.outpoint)
        return h is None or h.state == OPEN


class LaggingView:
    """A party's view of the chain ``lag`` blocks behind the tip (a node that is late to sync)."""

    def __init__(self, chain: FakeChain, lag: int = 0):
        self.chain, self.lag = chain, lag

    def height(self) -> int:
        return max(0, self.chain.height() - self.lag)

    def block_hash(self, height: int):
        return self.chain.block_hash(height) if height <= self.height() else None

    def htlc(self, outpoint: str):
        return self.chain.htlc(outpoint, at=self.height())

    def htlcs_for(self, hash: bytes) -> list:
        return self.chain.htlcs_for(hash, at=self.height())


# -- a world for swap tests: chain, issuer, replicators, buyer and seller, with fault switches -------------------

from node.market import swap as sw                                  # noqa: E402
from node.market.evidence import Policy, Reveal                    # noqa: E402
from node.market.issuer import Issuer                              # noqa: E402
from node.market.replicator import Replicator                      # noqa: E402
from node.market.token_chain import LockRequest                    # noqa: E402
from node.market.wire import message_type                          # noqa: E402
from node.cjdns import keys                                   # noqa: E402

ISSUER_SK = bytes(range(1, 33))
BUYER_SK = bytes(range(40, 72))
RESELLER_SK = bytes(range(140, 172))
REPLICATOR_SKS = [bytes([200 + i]) * 32 for i in range(3)]
BUYER_ADDR, SELLER_ADDR = b"buyer-address", b"seller-address"
FUNDS, PRICE, TOKEN = 10_000, 500, "lease-eth1-1"


def key(sk: bytes) -> bytes:
    return keys.signing_public_key(sk)


POLICY = Policy(frozenset(key(sk) for sk in REPLICATOR_SKS), quorum=2)


class SwapWorld:
    """One swap on a fresh world. Switches: ``alive`` (a dead party neither ticks nor receives; a dead seller that
    is the issuing device takes the issuer down too), ``partitioned`` (swap messages between buyer and seller are
    lost), ``views[role].lag`` (a party's PKT chain view lags), ``refuse_locks`` (the issuer ignores lock
    requests), ``chain.reorg``."""

    def __init__(self, reseller: bool = False, params: sw.SwapParams = sw.SwapParams(), seed: int = 0):
        self.chain = FakeChain({BUYER_ADDR: FUNDS})
        self.chain.mine(3)
        self.issuer = Issuer(ISSUER_SK, self.chain, confirmations=params.confirmations)
        self.reps = [Replicator(self.chain, POLICY, sk) for sk in REPLICATOR_SKS]
        self.alive = {"buyer": True, "seller": True, "issuer": True}
        self.partitioned = False
        self.refuse_locks = False
        self.reseller = reseller
        self.views = {"buyer": LaggingView(self.chain), "seller": LaggingView(self.chain)}
        self.gossip(self.issuer.issue_lease(TOKEN, "L1", "eth1", 1000, 0, 2_000_000_000, PRICE))
        seller_sk = ISSUER_SK
        if reseller:                    # the issuer first hands the token to a reseller (lock + transfer)
            seller_sk, p = RESELLER_SK, b"g" * 32
            req = LockRequest(self.issuer.key, TOKEN, b"", key(RESELLER_SK), sw.sha256(p), 1000,
                              b"r" * 16).signed(ISSUER_SK)
            self.gossip([req.encode()])
            self.gossip([Reveal(self.issuer.key, req.lock_id, p).signed(RESELLER_SK).encode()])
        self.seller_key = key(seller_sk)
        swap_id = seed.to_bytes(16, "big")
        secret = sw.sha256(b"secret" + swap_id)
        self.buyer = sw.BuyerSwap(BUYER_SK, BUYER_ADDR, self.issuer.key, TOKEN, PRICE, self.views["buyer"],
                                  self.reps[0], swap_id, params)
        self.seller = sw.SellerSwap(seller_sk, SELLER_ADDR, self.issuer.key, TOKEN, PRICE, self.views["seller"],
                                    self.reps[1], secret, swap_id, params)

    # -- plumbing ---------------------------------------------------------------------------------------------

    def kill(self, role: str, dead: bool = True) -> None:
        self.alive[role] = not dead
        if role == "seller" and not self.reseller:
            self.alive["issuer"] = not dead

    def gossip(self, datas, origin=None) -> None:
        """Flood messages to the replicators and (lock requests, reveals) to the live issuer."""
        queue = [(d, origin) for d in datas]
        seen = set()
        while queue:
            data, src = queue.pop(0)
            kind, _ = message_type(data)
            nodes = list(self.reps)
            if self.alive["issuer"] and (kind == "reveal" or (kind == "lock_request" and not self.refuse_locks)):
                nodes.append(self.issuer)
            for node in nodes:
                if node is src or (id(node), data) in seen:
                    continue
                seen.add((id(node), data))
                queue += [(out, node) for out in node.receive(data)]

    def party(self, role: str):
        return self.buyer if role == "buyer" else self.seller

    def act(self, role: str, actions) -> None:
        other = "seller" if role == "buyer" else "buyer"
        for a in actions:
            if isinstance(a, sw.Send):
                if not self.partitioned and self.alive[other]:
                    self.act(other, self.party(other).receive(a.data))
            elif isinstance(a, sw.Publish):
                self.gossip([a.data])
            elif isinstance(a, sw.FundHtlc):
                outpoint = self.chain.fund_htlc(BUYER_ADDR, a.amount, a.hash, a.pay_to, a.refund_to, a.refund_height)
                self.act(role, self.buyer.funded(outpoint))
            elif isinstance(a, sw.ClaimHtlc):
                self.chain.claim(a.outpoint, a.preimage)
            elif isinstance(a, sw.RefundHtlc):
                self.chain.refund(a.outpoint)
            else:
                raise AssertionError(f"unknown action {a!r}")

    def step(self) -> None:
        """Everyone reacts to the current tip, then a block is mined (the buyer proposes in the first step)."""
        if self.buyer.phase == "start" and self.alive["buyer"]:
            self.act("buyer", self.buyer.start())
        if self.alive["issuer"]:
            self.gossip(self.issuer.tick(), self.issuer)
        for r in self.reps:
            self.gossip(r.tick(), r)
        for role in ("seller", "buyer"):
            if self.alive[role]:
                self.act(role, self.party(role).tick())
        self.chain.mine()

    def heal(self) -> None:
        for role in ("buyer", "seller"):
            self.kill(role, False)
        self.partitioned = self.refuse_locks = False
        for v in self.views.values():
            v.lag = 0

    def finish(self, max_steps: int = 80) -> None:
        """Heal every fault and run until both parties are done, and a few blocks more."""
        self.heal()
        for _ in range(max_steps):
            if self.buyer.outcome and (self.seller.outcome or self.seller.phase == "start"):
                break
            self.step()
        for _ in range(3):
            self.step()

    # -- what the tests check ---------------------------------------------------------------------------------

    def holdings(self) -> dict:
        """Money on the chain (spendable, and still locked in open HTLCs) and the token owner in every view."""
        open_htlcs = sum(h.amount for h in self.chain.state_at(self.chain.height())[0].values() if h.state == "open")
        owners = {"issuer": self.issuer.state.tokens[TOKEN]}
        owners.update({f"replicator{i}": r.token(self.issuer.key, TOKEN) for i, r in enumerate(self.reps)})
        return {"buyer": self.chain.balance(BUYER_ADDR), "seller": self.chain.balance(SELLER_ADDR),
                "open": open_htlcs, "tokens": owners}

    def check_settled(self) -> str:
        """Both sides fully settled or both fully refunded, on the PKT chain and on the issuer chain."""
        seller = self.seller.outcome or (sw.REFUNDED_OUTCOME if self.seller.phase == "start" else None)
        assert self.buyer.outcome is not None and self.buyer.outcome == seller, (self.buyer.phase, self.seller.phase)
        h = self.holdings()
        assert h["open"] == 0 and h["buyer"] + h["seller"] == FUNDS, h
        if self.buyer.outcome == sw.COMPLETED:
            want_owner, want = key(BUYER_SK), (FUNDS - PRICE, PRICE)
        else:
            want_owner, want = self.seller_key, (FUNDS, 0)
        assert (h["buyer"], h["seller"]) == want, h
        for view, token in h["tokens"].items():
            if view == "issuer" or not self.reps[int(view[-1])].is_discredited(self.issuer.key):
                assert token.owner == want_owner and token.lock is None, (view, token)
        return self.buyer.outcome


class FakeLeases:
    """The devices that carry a seller's leases (node/market/lease_devices.py's AgentLeases) in memory: the test
    says how many bytes a lease carried (``carry``); grants are recorded as (lease, holder, expires_at)."""

    def __init__(self, leases):
        self.bytes = {lease: 0 for lease in leases}
        self.grants: list = []
        self.down = False

    def has(self, lease: str) -> bool:
        return lease in self.bytes

    def carry(self, lease: str, n: int) -> None:
        self.bytes[lease] += n

    async def carried(self, lease: str) -> int:
        if self.down:
            from node.market.lease_devices import LeaseDeviceError
            raise LeaseDeviceError("the devices are down (a test fault)")
        return self.bytes[lease]

    async def grant(self, lease: str, holder: str, expires_at: float) -> None:
        await self.carried(lease)
        self.grants.append((lease, holder, expires_at))
