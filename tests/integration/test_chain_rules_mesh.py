"""Chain rules on a running, time-scaled mesh (tests/integration/topologies/chain-rules.yaml: maturity 2, steward
burn depth 8, HTLC lock 4), through the chain nodes' RPC: a steward output older than the burn depth cannot be
spent (STEWARD_BURNED) while a younger one can; an HTLC output is redeemable with its preimage (not with another)
and refundable only from its lock height (NON_FINAL before); stake-weighted votes against the steward (`mesh.vote`,
what `pktlab wallet NODE --vote-for C --vote-against steward` does) from every holder, above half of all PKT mined,
elect the most-voted candidate. Every chain node ends with the same coins and steward."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from node.chain import script as S
from node.chain import wallet as W
from node.chain.keys import encode_address
from node.chain.params import for_run, steward_keys, steward_redeem_script
from node.chain.tx import OutPoint, TxOut
from node.chain.wire import hash_from_hex
from testbed import services
from testbed.mesh import Mesh

# slow (97 s in CI, whose run was 40:46 with it): CI keeps the rules' unit tests (test_chain_blocks.py,
# test_chain_election.py), blocks mined over a mesh (test_chain_mesh.py) and the chain-partition-heal scenario
pytestmark = [pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]
TOPOLOGY = str(Path(__file__).parent / "topologies" / "chain-rules.yaml")
CHAIN_NODES = ("c1", "c2", "c3")
FEE = 1 << 20


def _rpc(mesh, node, path, body=None):
    return services.chain_rpc(mesh.run, node, path, body)


def _coins(mesh, node, address):
    status, answer = _rpc(mesh, node, f"/coins?address={address}")
    assert status == 200, answer
    return answer


def _send(mesh, tx, node="c2"):
    return _rpc(mesh, node, "/sendtx", {"tx": tx.raw.hex()})


def _on_every_node(mesh, address, txid, within=60):
    """Until every chain node has an unspent output of `txid` paying `address`."""
    def seen():
        return all(any(c["txid"] == txid for c in _coins(mesh, n, address)["coins"]) for n in CHAIN_NODES)
    mesh.wait_until(seen, within, f"output of {txid} to {address} on every chain node")


def test_steward_burn_and_htlc_on_a_running_chain():
    with Mesh.up(TOPOLOGY, name="t-chain-rules") as mesh:
        params = for_run(mesh.run.state["chain"]["config"])
        assert (params.coinbase_maturity, params.steward_burn_depth, params.lock_blocks) == (2, 8, 4)
        mesh.wait_height(params.steward_burn_depth + 3, within=240)
        seed = mesh.run.state["seed"]
        r1 = services.wallet_key(seed, "r1")

        # --- steward outputs: the old one is burned, a young mature one spends (3 of the 5 published keys) -----
        steward = _coins(mesh, "c2", encode_address(params.initial_steward_script))
        by_state = {}
        for c in sorted(steward["coins"], key=lambda c: -c["height"]):
            by_state.setdefault(c["state"], c)
        assert {"burned", "spendable"} <= set(by_state), steward

        def steward_spend(c):
            tx = W.spend_tx([OutPoint(hash_from_hex(c["txid"]), c["index"])],
                            [TxOut(c["value"] - FEE, r1.p2pkh_script)])
            return W.sign_multisig(tx, 0, steward_redeem_script(), steward_keys()[:3])
        status, answer = _send(mesh, steward_spend(by_state["burned"]))
        assert (status, answer.get("reason")) == (400, "STEWARD_BURNED"), answer
        status, answer = _send(mesh, steward_spend(by_state["spendable"]))
        assert status == 200, answer
        _on_every_node(mesh, r1.address, answer["txid"])

        # --- HTLCs: one claimed by r1 with the preimage, one refunded to r1 from its lock height ---------------
        preimage = b"pktlab chain-rules preimage"
        claimer = services.wallet_key(seed, "c3")
        tip = _coins(mesh, "c2", r1.address)
        coin = next(c for c in tip["coins"] if c["state"] == "spendable")
        lock = tip["height"] + 1 + params.lock_blocks
        htlc = S.htlc(hashlib.sha256(preimage).digest(), claimer.pubkey, r1.pubkey, lock)
        part = (coin["value"] - FEE) // 2
        fund = W.spend_tx([OutPoint(hash_from_hex(coin["txid"]), coin["index"])],
                          [TxOut(part, htlc), TxOut(part, htlc)])
        fund = W.with_script_sig(fund, 0, S.push_data(W.signature(fund, 0, r1, r1.p2pkh_script))
                                 + S.push_data(r1.pubkey))
        status, answer = _send(mesh, fund)
        assert status == 200, answer
        fund_txid = fund.txid
        mesh.wait_until(lambda: _coins(mesh, "c2", r1.address)["height"] >= tip["height"] + 2, 60, "two blocks")

        def claim(pre):
            tx = W.spend_tx([OutPoint(fund_txid, 0)], [TxOut(part - FEE, claimer.p2pkh_script)])
            return W.htlc_redeem(tx, 0, htlc, claimer, pre)
        status, answer = _send(mesh, claim(b"not the preimage"))
        assert (status, answer.get("reason")) == (400, "SCRIPT_FAILED"), answer
        status, answer = _send(mesh, claim(preimage))
        assert status == 200, answer
        claim_txid = answer["txid"]

        refund = W.htlc_refund(W.spend_tx([OutPoint(fund_txid, 1)], [TxOut(part - FEE, r1.p2pkh_script)],
                                          lock_time=lock), 0, htlc, r1)
        status, answer = _send(mesh, refund)         # final only once the next block is past the lock
        height = _coins(mesh, "c2", r1.address)["height"]
        assert height + 1 <= lock, f"the chain passed the lock {lock} before the early refund was tried: {height}"
        assert (status, answer.get("reason")) == (400, "NON_FINAL"), (height, lock, answer)
        mesh.wait_height(lock, within=60)
        status, answer = _send(mesh, refund)
        assert status == 200, answer
        _on_every_node(mesh, claimer.address, claim_txid)
        _on_every_node(mesh, r1.address, answer["txid"])

        # --- the stake election: every holder votes against the steward, the most stake for r1 ----------------
        holders = {n: mesh.wallet(n)["balance"]["spendable"] for n in mesh.nodes}
        holders = sorted((v, n) for n, v in holders.items() if v > FEE)
        assert len(holders) >= 2, holders
        votes = {}
        for i, (_, n) in enumerate(holders):               # the smallest holder votes for c2, the others for r1
            votes[n] = mesh.vote(n, vote_for="c2" if i == 0 else "r1", vote_against="steward")
        assert sum(v["weight"] for v in votes.values() if v["for"] == "r1") > votes[holders[0][1]]["weight"]
        want = r1.p2pkh_script.hex()

        def elected():
            st = mesh.chain()["nodes"]
            return st if all(st[n].get("steward") == want for n in CHAIN_NODES) else None
        st = mesh.wait_until(elected, 90, "r1 elected Network Steward on every chain node")
        print("votes:", votes, "heights:", {n: st[n]["height"] for n in CHAIN_NODES})
