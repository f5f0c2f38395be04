"""Helpers for the chain tests: regtest chains mined in-process with faithful (version 1, 8192-item) announcements.

Announcements are mined once per parent block and cached by its hash, so tests that build the same blocks share
them (a table pair takes about a second with the C accelerator). A block at height h uses announcements whose
parent is the block at ann_parent_height(h): 3 to 7 blocks back, so they are mature and their aged target valid.
"""
from __future__ import annotations

from dataclasses import replace

from node.chain import blocks, mining
from node.chain.chainstate import ACCEPTED, Chain
from node.chain.keys import Key
from node.chain.packetcrypt import block as pc_block
from node.chain.packetcrypt.ann_tree import AnnTree, CoinbaseCommitment, sort_and_dedupe
from node.chain.packetcrypt.hashing import h32

ANN_BITS = 0x20020000           # the pools' default minimum announcement work (work 127)
SPACING = 20                    # seconds between test blocks
MINER = Key.from_seed("pktlab test miner")
_ANNS: dict[bytes, list[bytes]] = {}


def ann_parent_height(height: int) -> int:
    return 0 if height < 3 else ((height - 3) // 5) * 5


def anns_for(chain: Chain, height: int, count: int = 6) -> list[bytes]:
    p = ann_parent_height(height)
    parent = chain.block_hash_at(p)
    if parent not in _ANNS:
        _ANNS[parent] = mining.mine_announcements(chain, p, count, ANN_BITS,
                                                  hard_nonce=int.from_bytes(parent[:4], "little"))
    return _ANNS[parent]


def block_time(chain: Chain, height: int) -> int:
    return chain.params.genesis_time + SPACING * height


def template(chain: Chain, txs=None, *, fees: int = 0, payout: bytes | None = None, now: int | None = None):
    """A template on the tip; `txs` replaces what the mempool would give (with the fees they pay)."""
    h = chain.height + 1
    t = mining.make_template(chain, payout or MINER.p2pkh_script, now or block_time(chain, h))
    if txs is not None:
        t = replace(t, txs=list(txs), fees=fees)
    return t


def next_block(chain: Chain, txs=None, **kw) -> blocks.Block:
    t = template(chain, txs, **kw)
    return mining.solve(t, anns_for(chain, t.height)).block


def extend(chain: Chain, n: int, **kw) -> list[blocks.Block]:
    out = []
    for _ in range(n):
        b = next_block(chain, **kw)
        r = chain.process_block(b, b.header.time)
        assert r.status == ACCEPTED and chain.tip.hash == b.hash, (r.status, r.reason, r.detail)
        out.append(b)
    return out


def craft(t: mining.BlockTemplate, anns, *, commitment: CoinbaseCommitment | None = None,
          coinbase=None, header=None, signing_keys=None, content_proof=None) -> blocks.Block:
    """A block from exactly these announcements (no aging filter) with optional overrides, mined so that its
    PacketCrypt hash meets the effective target: the block is wrong only where the caller made it wrong."""
    hashes = sort_and_dedupe(h32(a) for a in anns)
    by_hash = {h32(a): bytes(a) for a in anns}
    tree = AnnTree(hashes)
    commit = commitment or CoinbaseCommitment(0x207FFFFF, tree.commitment, tree.ann_count)
    ann_set = pc_block.BlockAnnSet([by_hash[h] for h in hashes], tree, commit)
    cb = coinbase or t.coinbase(commit)
    hdr = header or t.header(cb)
    target = ann_set.effective_target(hdr.bits)
    sol = pc_block.mine_block(hdr.serialize(), ann_set, target)
    proof = pc_block.make_proof(ann_set, sol, signing_keys)
    if content_proof is not None:
        proof = replace(proof, content_proof=content_proof)
    return blocks.Block(hdr, (cb, *t.txs), proof)
