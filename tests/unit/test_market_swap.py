"""Atomic swaps lease token <-> PKT (node/market/swap.py) on an in-memory chain: every fault, every interleaving.

The property everywhere: the swap ends with both parties fully settled (the seller holds the price on the PKT
chain, the buyer the token in every view of the issuer chain) or both fully refunded, and no PKT is lost.
"""
import dataclasses
import os
import random
import sys

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.market import swap as sw
from node.market.evidence import Reveal
from node.market.replicator import Replicator
from node.market.wire import sha256

sys.path.insert(0, os.path.dirname(__file__))
from market_fakes import BUYER_SK, FUNDS, ISSUER_SK, POLICY, PRICE, TOKEN, SwapWorld, key  # noqa: E402

FAULTS = ("none", "kill_buyer", "kill_seller", "partition", "lag_buyer", "lag_seller", "reorg", "refuse_lock")


def run_with_fault(world: SwapWorld, kind: str, at: int, length: int, rng: random.Random) -> None:
    """Inject one fault at step ``at`` for ``length`` steps, then heal and finish."""
    for step in range(at + length + 1):
        if step == at:
            if kind in ("kill_buyer", "kill_seller"):
                world.kill(kind.split("_")[1])
            elif kind == "partition":
                world.partitioned = True
            elif kind.startswith("lag_"):
                world.views[kind[4:]].lag = rng.randint(1, world.buyer.params.reveal_margin - 2)
            elif kind == "reorg":
                depth = rng.randint(1, world.buyer.params.confirmations - 1)
                world.chain.reorg(depth, empty_blocks=rng.randint(0, depth + 1),
                                  drop=rng.choice([None, "fund", "claim"]))
            elif kind == "refuse_lock":
                world.refuse_locks = True
        world.step()
    world.finish()


def test_swap_completes_and_the_token_moves():
    w = SwapWorld()
    w.finish()
    assert w.check_settled() == sw.COMPLETED
    assert all(sum(r.rejected.values()) == r.rejected["duplicate"] for r in w.reps)
    assert not w.buyer.rejected and not w.seller.rejected


def test_swap_from_a_reseller():
    w = SwapWorld(reseller=True)
    w.finish()
    assert w.check_settled() == sw.COMPLETED


def test_twenty_swaps_each_with_one_random_fault():
    rng = random.Random(16)
    outcomes = []
    for n in range(20):
        kind = FAULTS[1 + n % (len(FAULTS) - 1)] if n < 14 else rng.choice(FAULTS[1:])
        w = SwapWorld(reseller=rng.random() < 0.3, params=sw.SwapParams(confirmations=rng.choice([2, 3])), seed=n)
        run_with_fault(w, kind, at=rng.randint(0, 10), length=rng.randint(1, 8), rng=rng)
        outcomes.append((kind, w.check_settled()))
        if kind == "refuse_lock" and w.buyer.outcome == sw.REFUNDED_OUTCOME and w.reps[0].discredited:
            assert_proof_verifies_elsewhere(w)
    assert {o for _, o in outcomes} == {sw.COMPLETED, sw.REFUNDED_OUTCOME}, outcomes


def assert_proof_verifies_elsewhere(w: SwapWorld) -> None:
    proof = w.reps[0].discredited[w.issuer.key]
    fresh = Replicator(w.chain, POLICY)
    assert fresh.receive(proof.encode()) and fresh.is_discredited(w.issuer.key)


def test_buyer_killed_after_funding_still_gets_the_token():
    w = SwapWorld()
    while w.buyer.phase != "funded":
        w.step()
    w.kill("buyer")
    for _ in range(25):                 # far past both timeouts: the issuer transfers from the chain's preimage
        w.step()
    assert w.issuer.state.tokens[TOKEN].owner == key(BUYER_SK)
    w.finish()
    assert w.check_settled() == sw.COMPLETED


def test_seller_killed_before_claiming_refunds_both():
    w = SwapWorld()
    while w.buyer.phase != "funded":
        w.step()
    w.kill("seller")
    for _ in range(20):
        w.step()
    assert w.buyer.outcome == sw.REFUNDED_OUTCOME
    w.finish()
    assert w.check_settled() == sw.REFUNDED_OUTCOME


def run_until(w: SwapWorld, done, limit: int = 40) -> None:
    for _ in range(limit):
        if done():
            return
        w.step()
    raise AssertionError("the swap never got there")


def test_a_seller_back_after_the_refund_height_does_not_claim():
    """Both parties were down across T_htlc: a late claim could land after the token went back to the seller."""
    w = SwapWorld()
    run_until(w, lambda: w.buyer.phase == "funded")
    w.kill("seller")
    w.kill("buyer")
    run_until(w, lambda: w.chain.height() >= w.buyer.accept.htlc_refund)
    w.kill("seller", False)
    for _ in range(3):
        w.step()
    assert w.chain.htlc(w.buyer.outpoint).state == "open"
    w.finish()
    assert w.check_settled() == sw.REFUNDED_OUTCOME


def test_reorg_that_censors_the_claim_is_claimed_again():
    w = SwapWorld(params=sw.SwapParams(confirmations=3))
    run_until(w, lambda: w.seller.phase == "claimed")
    w.step()                            # the claim is mined and the buyer sees it
    w.chain.reorg(2, empty_blocks=1, drop="claim")
    w.finish()
    assert w.check_settled() == sw.COMPLETED


def test_a_claim_dropped_after_the_token_moved_is_claimed_again():
    """Found on the mesh (tests/integration/test_market_faults_mesh.py), where the parties tick many times per
    block: the buyer reveals as soon as it sees the claim, so the token moves while the claim is one block deep; a
    reorg that then drops the claim must not leave the seller unpaid. The seller is done only once its claim is
    confirmations deep, and claims again until then."""
    w = SwapWorld()
    run_until(w, lambda: w.seller.outpoint and (w.chain.htlc(w.seller.outpoint) or None) and
              w.chain.htlc(w.seller.outpoint).state == "claimed")
    for _ in range(3):                  # ticks within one block: reveal, transfer, the seller sees it
        w.act("buyer", w.buyer.tick())
        w.gossip(w.issuer.tick(), w.issuer)
        for r in w.reps:
            w.gossip(r.tick(), r)
        w.act("seller", w.seller.tick())
    assert w.seller.tokens.lock(w.issuer.key, w.seller.accept.lock).state == "transferred"
    assert w.chain.height() == w.chain.htlc(w.seller.outpoint).spent_height      # the claim is one block deep
    w.chain.reorg(1, drop="claim")
    w.finish()
    assert w.check_settled() == sw.COMPLETED


def test_a_buyer_restarted_late_resumes_its_funded_swap():
    """Found on the mesh: a buyer killed after the seller claimed and restarted near T_htlc replayed its journaled
    accept through receive(), which refused it as too_late, so the funded swap was forgotten and reported
    refunded. resume() takes the journaled accept and outpoint as they were."""
    w = SwapWorld()
    run_until(w, lambda: w.seller.phase == "claimed")
    w.kill("buyer")
    run_until(w, lambda: w.chain.height() + 1 + w.buyer.params.confirmations >= w.buyer.accept.htlc_refund)
    accept, outpoint = w.buyer.accept.encode(), w.buyer.outpoint
    replayed = sw.BuyerSwap(BUYER_SK, w.buyer.propose.refund_to, w.issuer.key, TOKEN, PRICE, w.views["buyer"],
                            w.reps[0], w.buyer.propose.swap)
    replayed.phase = "proposed"
    assert replayed.receive(accept) == [] and replayed.rejected[sw.TOO_LATE] == 1       # the old way
    w.buyer = sw.BuyerSwap(BUYER_SK, w.buyer.propose.refund_to, w.issuer.key, TOKEN, PRICE, w.views["buyer"],
                           w.reps[0], w.buyer.propose.swap)
    w.buyer.resume(accept=accept)
    w.buyer.resume(outpoint=outpoint)
    assert w.buyer.phase == "funded"
    w.kill("buyer", False)
    w.finish()
    assert w.check_settled() == sw.COMPLETED


def test_a_funding_mined_late_is_refunded_not_left_locked():
    """The buyer's funding stays out of every block past T_htlc + confirmations (a mempool cut off from the miner)
    and then gets in: the buyer, still watching, refunds it (it used to count the swap refunded and leave the PKT
    locked in the HTLC)."""
    w = SwapWorld()
    fund, held = w.chain.fund_htlc, []

    def fund_held(*args):
        outpoint = fund(*args)
        held.append(w.chain.mempool.pop())
        return outpoint
    w.chain.fund_htlc = fund_held
    run_until(w, lambda: w.buyer.phase == "funded")
    p = w.buyer.params
    run_until(w, lambda: w.chain.height() >= w.buyer.accept.htlc_refund + p.confirmations + 2)
    assert w.buyer.outcome is None                  # still watching for the funding
    w.chain.mempool.extend(held)
    w.finish()
    assert w.check_settled() == sw.REFUNDED_OUTCOME


def test_seller_reveals_only_once_its_claim_is_deep():
    """A claim censored by a reorg while the seller is down and the buyer never saw it: the buyer refunds, so the
    token must not have moved (the seller published no reveal for a shallow claim)."""
    w = SwapWorld(params=sw.SwapParams(confirmations=3))
    run_until(w, lambda: w.buyer.phase == "funded")
    w.kill("buyer")
    run_until(w, lambda: w.seller.phase == "claimed")
    w.step()                            # the claim is mined (depth 1); the seller acts on that tip
    w.chain.reorg(2, drop="claim")
    w.kill("seller")
    w.kill("buyer", False)
    run_until(w, lambda: w.buyer.outcome is not None)
    assert w.buyer.outcome == sw.REFUNDED_OUTCOME
    w.finish()
    assert w.check_settled() == sw.REFUNDED_OUTCOME


def test_seller_claims_only_a_confirmed_payment():
    """A buyer that reads the preimage from the seller's claim, then double-spends its funding in a reorg and
    reveals: the funding was confirmations deep before the claim, so a shallower reorg cannot take it back."""
    params = sw.SwapParams(confirmations=3)
    w = SwapWorld(params=params)
    run_until(w, lambda: w.seller.phase == "claimed")   # the claim was mined in the last block
    x = w.seller.secret                 # ... so the preimage is public
    w.chain.reorg(params.confirmations - 1, empty_blocks=params.confirmations, drop="fund")
    w.gossip([Reveal(w.issuer.key, w.seller.accept.lock, x).signed(BUYER_SK).encode()])
    w.finish()
    assert w.check_settled() == sw.COMPLETED


def test_buyer_does_not_fund_a_lock_other_than_agreed():
    """A seller whose lock times out before the HTLC refund (the unsafe order) while its accept says otherwise."""
    w = SwapWorld()
    w.refuse_locks = True               # the honest request stays unlocked; only the short one below is locked
    w.act("buyer", w.buyer.start())
    w.refuse_locks = False
    accept, real = w.seller.accept, w.seller.request
    short = dataclasses.replace(real, timeout=accept.htlc_refund, nonce=b"m" * 16).signed(ISSUER_SK)
    forged_accept = dataclasses.replace(accept, lock=short.lock_id).signed(ISSUER_SK)
    w.buyer.accept, w.buyer.phase = None, "proposed"
    w.gossip([short.encode()])
    assert w.reps[0].lock(w.issuer.key, short.lock_id) is not None
    w.act("buyer", w.buyer.receive(forged_accept.encode()))
    actions = w.buyer.tick()
    assert not any(isinstance(a, sw.FundHtlc) for a in actions)
    assert w.buyer.rejected["bad_lock"] == 1 and w.buyer.outcome == sw.REFUNDED_OUTCOME


def test_issuer_refusing_to_lock_is_discredited_and_nothing_moves():
    w = SwapWorld(reseller=True)
    w.refuse_locks = True
    for _ in range(10):
        w.step()
    assert all(r.is_discredited(w.issuer.key) for r in w.reps)
    assert w.reps[0].discredited[w.issuer.key].fault == "refused_request"
    assert_proof_verifies_elsewhere(w)
    w.finish()
    assert w.check_settled() == sw.REFUNDED_OUTCOME
    assert w.buyer.rejected == {} and w.chain.balance(b"buyer-address") == FUNDS


def test_buyer_refuses_unsafe_timeouts():
    """A lock that times out before the HTLC (plus the reveal margin) would let the seller keep both."""
    w = SwapWorld()
    w.step()
    accept = sw.SwapAccept(w.buyer.propose.swap, b"", sha256(b"x" * 32), b"l" * 16, 20, 18, b"pay")
    w.buyer.phase = "proposed"
    w.buyer.accept = None
    assert w.buyer.receive(accept.signed(ISSUER_SK).encode()) == []
    assert w.buyer.rejected == {"unsafe_timeouts": 1}


def test_bad_swap_messages_are_counted_never_raised():
    w = SwapWorld()
    w.step()                             # propose -> accept -> lock published
    buyer, seller = w.buyer, w.seller
    good_accept = seller.accept
    mallory = bytes(range(150, 182))
    cases = [
        (buyer, b"not json", "malformed"),
        (buyer, b'{"v":1,"type":"swap_accept"}', "malformed"),
        (buyer, b'{"v":2,"type":"swap_cancel"}', "malformed"),
        (buyer, dataclasses.replace(good_accept, htlc_refund=good_accept.htlc_refund + 1).encode(), "bad_signature"),
        (buyer, dataclasses.replace(good_accept, swap=b"z" * 16).signed(ISSUER_SK).encode(), "wrong_swap"),
        (buyer, sw.SwapCancel(buyer.propose.swap, b"", "bye").signed(mallory).encode(), "wrong_sender"),
        (buyer, buyer.propose.encode(), "unexpected"),
        (seller, sw.SwapFunded(buyer.propose.swap, b"", "ab" * 32 + ":0").signed(mallory).encode(), "wrong_sender"),
        (seller, sw.SwapPropose(b"q" * 16, w.issuer.key, TOKEN, PRICE, b"", b"a").signed(mallory).encode(), "busy"),
        (seller, sw.SwapFunded(b"q" * 16, b"", "ab" * 32 + ":0").signed(BUYER_SK).encode(), "wrong_swap"),
    ]
    for party, data, reason in cases:
        before = party.rejected[reason]
        assert party.receive(data) == []
        assert party.rejected[reason] == before + 1, (reason, party.rejected)
    assert buyer.accept == good_accept          # nothing above changed the swap
    w.finish()
    assert w.check_settled() == sw.COMPLETED


@pytest.mark.parametrize("change,reason", [
    ({"price": PRICE - 1}, "price_too_low"),
    ({"token": "other"}, "wrong_token"),
])
def test_seller_refuses_bad_proposals(change, reason):
    w = SwapWorld()
    bad = dataclasses.replace(w.buyer.propose, **change).signed(BUYER_SK)
    assert w.seller.receive(bad.encode()) == []
    assert w.seller.rejected == {reason: 1}
    assert w.seller.accept is None


def test_seller_refuses_a_token_it_does_not_hold():
    w = SwapWorld(reseller=True)
    issuer_as_seller = sw.SellerSwap(ISSUER_SK, b"s", w.issuer.key, TOKEN, PRICE, w.chain, w.reps[1], b"x" * 32,
                                     b"n" * 16)
    assert issuer_as_seller.receive(w.buyer.propose.encode()) == []
    assert issuer_as_seller.rejected == {"token_not_available": 1}


def test_swap_params_are_checked():
    with pytest.raises(ValueError, match="reveal_margin"):
        sw.SwapParams(reveal_margin=1)
    with pytest.raises(ValueError, match="confirmations"):
        sw.SwapParams(confirmations=0)


class SwapMachine(RuleBasedStateMachine):
    """Any interleaving of kills, partitions, chain lag, reorgs, refusals and junk with the protocol's steps.

    A party stays dead at most MAX_DEAD steps (an honest issuer offline past its time to act is discredited by
    design: evidence.py). The chain keeps the liveness swap.py assumes: reorgs are shallower than the confirmation
    depth, and the blocks by which reorgs delay a transaction (their empty blocks, summed: D) plus the largest lag
    of a chain view (L) stay within L + D <= reveal_margin + 2 - confirmations. Censoring a claim is covered by its
    own tests. At the end every fault heals and the swap must settle both ways or refund both ways."""
    MAX_DEAD = 8
    PARAMS = sw.SwapParams(confirmations=3)
    BUDGET = PARAMS.reveal_margin + 2 - PARAMS.confirmations

    def __init__(self):
        super().__init__()
        self.w = SwapWorld(reseller=False, params=self.PARAMS)
        self.dead_for = {"buyer": 0, "seller": 0}
        self.delay, self.max_lag = 0, 0

    @rule()
    def step(self):
        for role in self.dead_for:
            if not self.w.alive[role]:
                self.dead_for[role] += 1
                if self.dead_for[role] > self.MAX_DEAD:
                    self.w.kill(role, False)
        self.w.step()

    @rule(role=st.sampled_from(["buyer", "seller"]))
    def kill_or_revive(self, role):
        self.dead_for[role] = 0
        self.w.kill(role, self.w.alive[role])

    @rule()
    def toggle_partition(self):
        self.w.partitioned = not self.w.partitioned

    @rule(role=st.sampled_from(["buyer", "seller"]), lag=st.integers(0, 5))
    def lag(self, role, lag):
        lag = min(lag, self.BUDGET - self.delay)
        self.max_lag = max(self.max_lag, lag)
        self.w.views[role].lag = lag

    @rule(depth=st.integers(1, 2), empty=st.integers(0, 3), double_spend=st.booleans())
    def reorg(self, depth, empty, double_spend):
        empty = min(empty, self.BUDGET - self.delay - self.max_lag)
        self.delay += empty
        self.w.chain.reorg(depth, empty_blocks=empty, drop="fund" if double_spend else None)

    @rule()
    def toggle_refusal(self):
        self.w.refuse_locks = not self.w.refuse_locks

    @rule(junk=st.binary(max_size=200) | st.sampled_from([b"{}", b'{"v":1,"type":"swap_funded"}', b"[]"]))
    def junk_to_everyone(self, junk):
        for party in (self.w.buyer, self.w.seller):
            assert party.receive(junk) == []
        for r in self.w.reps:
            assert r.receive(junk) == []

    @precondition(lambda self: self.w.buyer.accept is not None)
    @rule()
    def replay_old_messages(self):
        self.w.act("buyer", self.w.buyer.receive(self.w.seller.accept.encode()))
        self.w.act("seller", self.w.seller.receive(self.w.buyer.propose.encode()))

    @invariant()
    def no_pkt_is_lost(self):
        h = self.w.holdings()
        assert h["buyer"] + h["seller"] + h["open"] == FUNDS, h     # a funding in the mempool has taken nothing yet

    def teardown(self):
        self.w.finish(max_steps=120)
        self.w.check_settled()


SwapMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_swap_interleavings = SwapMachine.TestCase
