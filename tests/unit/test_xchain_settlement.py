"""Cross-chain settlement (node/xchain) on real in-process chains: two PKT chains with their own genesis, blocks mined
by solo miners, every transaction through the chains' consensus. Parties follow the chains only through blocks; a
party "cut off" cannot reach a chain (its access raises OSError); a "halted" chain mines no blocks."""
from __future__ import annotations

import hashlib

import pytest

from node.chain import params as chain_params
from node.chain.blocks import Block
from node.chain.chainstate import Chain
from node.chain.consensus import Rejected
from node.chain.keys import Key, decode_address
from node.chain.solo import SoloMiner, mine_anns
from node.chain.tx import OutPoint, TxIn
from node.xchain import settlement as X
from node.xchain.party import Party
from node.xchain.watch import ChainWatch, Seen, State

FEE = 1000
AMOUNT = 5 << 30
TIMING = X.Timing(setup_s=2, margin_s=5)       # in blocks of 1 s
BLOCK_TIMES = {"alpha": 1.0, "beta": 1.0}


class Access:
    """A party's way to an in-process chain; `up` False: it cannot reach it."""

    def __init__(self, sim, name):
        self.sim, self.name, self.up = sim, name, True

    @property
    def chain(self):
        return self.sim.chains[self.name]

    def _check(self):
        if not self.up:
            raise OSError(f"{self.name} unreachable")

    def tip(self):
        self._check()
        return self.chain.height

    def block_at(self, h):
        self._check()
        return Block.parse(self.chain.store.block_raw(self.chain.block_hash_at(h)))

    def coins(self, address):
        self._check()
        script, c = decode_address(address), self.chain
        return [(op, coin.value) for op, coin in c.iter_coins() if coin.script == script
                and op not in c.mempool.spenders and c.height + 1 - coin.height >= c.params.coinbase_maturity]

    def send(self, tx):
        self._check()
        try:
            self.chain.accept_tx(tx, self.sim.now)
        except Rejected as e:
            raise ValueError(f"{e.reason.value}: {e.detail}") from None


class Sim:
    def __init__(self, tmp_path, parties: dict[str, list[str]]):
        self.now = 1_800_000_000
        self.chains, self.miners, self.halted = {}, {}, set()
        for i, name in enumerate(BLOCK_TIMES):
            p = chain_params.for_run({"block_time": 1, "maturity": 1, "genesis_time": self.now + i,
                                      "net_magic": 0x082F00FD + i, "port": 64766 + 2 * i})
            self.chains[name] = Chain(tmp_path / name, p)
            self.miners[name] = SoloMiner(self.chains[name], Key.from_seed("miner").p2pkh_script)
        self.keys = {n: Key.from_seed(f"party {n}") for n in parties}
        self.parties = {n: Party(n, self.keys[n], {c: Access(self, c) for c in BLOCK_TIMES}, BLOCK_TIMES, TIMING,
                                 FEE, resend_s=0) for n in parties}
        for n, chains in parties.items():          # two coinbases each on the chains it holds funds on
            for c in chains:
                for _ in range(2):
                    self.mine(c, self.keys[n].p2pkh_script)
        self.tick()
        self.start = {n: self.balances(n) for n in parties}

    def close(self):
        for c in self.chains.values():
            c.close()

    def mine(self, name, pay_to=None):
        m = self.miners[name]
        m.payout_script = pay_to or Key.from_seed("miner").p2pkh_script
        parent = m.ann_parent()
        if parent is not None:
            m.add_anns(mine_anns(*parent))
        block = m.block(self.now)
        assert self.chains[name].process_block(block, self.now).ok

    def tick(self, rounds=1):
        for _ in range(rounds):
            self.now += 1
            for name in self.chains:
                if name not in self.halted:
                    self.mine(name)
            for p in self.parties.values():
                p.step(self.now)
            for p in self.parties.values():              # preimages handed back to the reachable parties
                while p.handed_back:
                    tid, preimage = p.handed_back.pop()
                    for q in self.parties.values():
                        if q is not p and tid in q.transfers and all(a.up for a in q.access.values()):
                            q.learn(tid, preimage)

    def balances(self, n):
        script = self.keys[n].p2pkh_script
        return {c: sum(coin.value for _, coin in ch.iter_coins() if coin.script == script)
                for c, ch in self.chains.items()}

    def hop(self, chain, payer, payee):
        return X.Hop(chain, payer, payee, self.keys[payer].pubkey, self.keys[payee].pubkey)

    def transfer(self, tid, hops, holder, fee_per_hop=0):
        secret = hashlib.sha256(tid.encode()).digest()
        heights = {c: ch.height for c, ch in self.chains.items()}
        t = X.plan(tid, hops, AMOUNT, X.S.htlc_hash(secret), heights, BLOCK_TIMES, TIMING, fee_per_hop)
        for n in t.parties:
            self.parties[n].add(t, secret if n == holder else None)
        return t

    def outcome(self, t, by):
        return X.outcome(self.parties[by].seen(t.id))

    def run_until_done(self, t, by, limit=80):
        for _ in range(limit):
            self.tick()
            if self.outcome(t, by) != X.PENDING:
                self.tick(2)              # let the last spends settle
                return self.outcome(t, by)
        return self.outcome(t, by)

    def cut(self, party, up):
        for a in self.parties[party].access.values():
            a.up = up

    def delta(self, n):
        now = self.balances(n)
        return {c: now[c] - self.start[n][c] for c in now}


@pytest.fixture
def relay_sim(tmp_path):
    sim = Sim(tmp_path, {"s": ["alpha"], "x": ["alpha", "beta"], "r": []})
    yield sim
    sim.close()


def _relay(sim, fee_per_hop=0):
    return sim.transfer("t1", [sim.hop("alpha", "s", "x"), sim.hop("beta", "x", "r")], holder="r",
                        fee_per_hop=fee_per_hop)


def test_plan_decreasing_locks_and_errors():
    heights, bt = {"alpha": 100, "beta": 10}, {"alpha": 1.0, "beta": 2.0}
    k = [Key.from_seed(str(i)).pubkey for i in range(3)]
    hops = [X.Hop("alpha", "s", "x", k[0], k[1]), X.Hop("beta", "x", "r", k[1], k[2])]
    t = X.plan("t", hops, 1000, bytes(32), heights, bt, TIMING, fee_per_hop=7)
    assert TIMING.times(2) == [2 * 2 + 10 + 5 + 2, 2 * 2 + 10]
    assert [leg.lock_height for leg in t.legs] == [100 + 21, 10 + 7]          # beta: 14 s at 2 s a block
    assert [leg.amount for leg in t.legs] == [1007, 1000]
    for bad, words in [({"hops": [hops[1], hops[0]]}, "paid by s"), ({"hops": []}, "at least one hop"),
                       ({"amount": 0}, "positive"), ({"payment_hash": b"x"}, "32 bytes"),
                       ({"heights": {"alpha": 1}}, "chain beta")]:
        args = {"transfer_id": "t", "hops": hops, "amount": 1000, "payment_hash": bytes(32), "heights": heights,
                "block_times": bt, "timing": TIMING}
        with pytest.raises(X.PlanError, match=words):
            X.plan(**(args | bad))


def test_outcome_table():
    N, F, D, R = State.NONE, State.FUNDED, State.REDEEMED, State.REFUNDED
    cases = {(D, D): X.COMMITTED, (R, N): X.REFUNDED, (R, R): X.REFUNDED, (N, N): X.PENDING, (F, N): X.PENDING,
             (F, D): X.PENDING, (R, D): X.HALF, (D, R): X.HALF, (D, N): X.HALF, (R, F): X.PENDING}
    for states, want in cases.items():
        assert X.outcome([Seen(state=s) for s in states]) == want, states


def test_relay_transfer_commits_on_both_chains(relay_sim):
    sim = relay_sim
    t = _relay(sim, fee_per_hop=3000)
    assert sim.run_until_done(t, "x") == X.COMMITTED
    assert all(X.outcome(sim.parties[n].seen(t.id)) == X.COMMITTED for n in "sxr")
    assert sim.delta("s") == {"alpha": -(AMOUNT + 3000) - FEE, "beta": 0}
    assert sim.delta("r") == {"alpha": 0, "beta": AMOUNT - FEE}
    assert sim.delta("x") == {"alpha": AMOUNT + 3000 - FEE, "beta": -AMOUNT - FEE}
    assert not any(p.errors for p in sim.parties.values()), {n: p.errors for n, p in sim.parties.items()}


def test_pairwise_swap_commits(tmp_path):
    sim = Sim(tmp_path, {"p": ["alpha"], "q": ["beta"]})
    try:
        t = sim.transfer("swap", [sim.hop("alpha", "p", "q"), sim.hop("beta", "q", "p")], holder="p")
        assert sim.run_until_done(t, "q") == X.COMMITTED
        assert sim.delta("p") == {"alpha": -AMOUNT - FEE, "beta": AMOUNT - FEE}
        assert sim.delta("q") == {"alpha": AMOUNT - FEE, "beta": -AMOUNT - FEE}
    finally:
        sim.close()


def test_receiver_that_never_redeems_leaves_both_legs_refunded(relay_sim):
    sim = relay_sim
    t = _relay(sim)
    sim.parties["r"].transfers[t.id].secret = None          # the receiver lost its secret
    assert sim.run_until_done(t, "x") == X.REFUNDED
    assert [s.state for s in sim.parties["x"].seen(t.id)] == [State.REFUNDED, State.REFUNDED]
    assert sim.delta("s") == {"alpha": -2 * FEE, "beta": 0}            # the lock's and the refund's fees
    assert sim.delta("x") == {"alpha": 0, "beta": -2 * FEE}


def test_relay_cut_off_before_forwarding_refunds_the_sender(relay_sim):
    sim = relay_sim
    t = _relay(sim)
    sim.cut("x", up=False)
    assert sim.run_until_done(t, "s") == X.REFUNDED
    assert [s.state for s in sim.parties["s"].seen(t.id)] == [State.REFUNDED, State.NONE]
    sim.cut("x", up=True)
    sim.tick(3)                                              # back, it sees the refund and does not forward
    assert X.outcome(sim.parties["x"].seen(t.id)) == X.REFUNDED
    assert sim.delta("x") == {"alpha": 0, "beta": 0}


def test_relay_cut_off_after_the_preimage_shorter_than_the_margin_still_commits(relay_sim):
    sim = relay_sim
    t = _relay(sim)
    for _ in range(30):
        sim.tick()
        if sim.parties["x"].seen(t.id)[1].state is State.FUNDED:
            break
    sim.cut("x", up=False)                     # the receiver redeems meanwhile, revealing the preimage
    sim.tick(int(TIMING.margin_s) - 2)
    assert sim.parties["r"].seen(t.id)[1].state is State.REDEEMED
    sim.cut("x", up=True)
    assert sim.run_until_done(t, "x") == X.COMMITTED


def test_relay_cut_off_longer_than_the_margin_is_the_stated_limit(relay_sim):
    """Beyond the margin HTLCs cannot help: the sender's refund wins and the relay loses the amount. The test keeps
    the assumption honest: the protocol's guarantee is 'cut off for at most margin_s'."""
    sim = relay_sim
    t = _relay(sim)
    for _ in range(30):
        sim.tick()
        if sim.parties["x"].seen(t.id)[1].state is State.FUNDED:
            break
    sim.cut("x", up=False)
    sim.tick(40)
    sim.cut("x", up=True)
    sim.tick(3)
    assert X.outcome(sim.parties["x"].seen(t.id)) == X.HALF


def test_destination_chain_halted_mid_transfer(relay_sim):
    sim = relay_sim
    t = _relay(sim)
    for _ in range(30):
        sim.tick()
        if sim.parties["x"].seen(t.id)[1].state is State.FUNDED:
            break
    sim.halted.add("beta")                      # its nodes are down: no blocks, the receiver's redeem waits
    sim.tick(25)
    sim.halted.clear()
    assert sim.run_until_done(t, "x") in (X.COMMITTED, X.REFUNDED)
    assert X.outcome(sim.parties["s"].seen(t.id)) == X.outcome(sim.parties["x"].seen(t.id))


def test_watch_rewinds_a_reorg():
    key = Key.from_seed("k")
    script = X.S.htlc(bytes(32), key.pubkey, key.pubkey, 50)
    w = ChainWatch()
    w.watch(script)

    class B:                                    # the two fields a watch reads of a block
        def __init__(self, prev, h, txs):
            self.header = type("H", (), {"prev_hash": prev})()
            self.hash, self.txs = h, txs
    from node.chain.tx import Transaction, TxOut
    fund = Transaction((TxIn(OutPoint(b"\1" * 32, 0)),), (TxOut(77, script),))
    assert w.feed(1, B(b"g", b"h1", [fund]))
    assert w.seen(script).state is State.FUNDED and w.seen(script).value == 77
    assert not w.feed(2, B(b"other", b"h2", []))            # does not extend h1
    assert not w.feed(3, B(b"h1", b"h3", []))               # not the next height
    w.rewind(0)
    assert w.seen(script).state is State.NONE and w.height == 0
    with pytest.raises(ValueError, match="not an HTLC"):
        w.watch(key.p2pkh_script)
