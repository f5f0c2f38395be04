"""Block templates and the block-mining driver (pkt-reference.md §5.5, §5.10).

    anns = mine_announcements(chain, parent_height, count=8, work_bits=0x20020000)    # or from a pool
    block = mine_block(chain, payout_script, anns, now)      # template + choice of announcements + PacketCrypt
    chain.process_block(block, now)

A template's coinbase pays `subsidy - steward payout + fees` to the miner, EXACTLY the steward payout to the
current steward, and carries the PacketCrypt commitment (OP_RETURN PUSH48, value 0). The block miner keeps the
announcements usable at the block's height and takes the prefix of the announcement classes (equal aged targets),
sorted by effective work, that maximises the effective target (blkmine.rs reload_classes). Mining runs the
PacketCrypt block hash of node/chain/packetcrypt; announcement tables use its C accelerator when it is built
(pure Python otherwise); the block hash loop itself is Python over libsodium/OpenSSL primitives.

`starting_bits` sets the difficulty so that a block miner of a measured hash rate meets a block time with a given
announcement set: PcP v2 needs W_eff = W_blk^3 / 1024 / W_ann / N^2 hashes, so W_blk = cbrt(W_eff*1024*W_ann*N^2).

Pools (§5.10) split the miners' part of the coinbase among many outputs (pktd's configureMiningPayouts): a
template made with `payouts=[(script, weight), ...]` pays `subsidy - steward payout + fees` in proportion to the
weights, each output floor(amount * weight / sum of weights) units; the units that rounding leaves go to the
output of the largest weight (the first of equal ones, in the order given); outputs of 0 units are left out. A
pool's work carries the coinbase with COMMIT_PATTERN where the commitment goes (BlkHandler.js: OP_RETURN PUSH48,
the commitment magic, 44 bytes 0xfc) and the coinbase's merkle branch (`coinbase_branch`), so a block miner patches
the commitment in and computes the merkle root without the other transactions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .blocks import Block, BlockHeader, coinbase_tx, merkle_root
from .wire import sha256d
from .packetcrypt import announcement as ann_mod
from .packetcrypt import block as pc_block
from .packetcrypt import difficulty
from .packetcrypt.ann_tree import COMMIT_PATTERN
from .packetcrypt.randgen import RandHashError
from .tx import Transaction, TxOut

PCP_VERSION = 2


def split_payout(amount: int, payouts: list[tuple[bytes, float]]) -> list[TxOut]:
    """The miners' outputs of a coinbase: `amount` units split in proportion to the weights (see the docstring)."""
    weights = [(bytes(script), float(w)) for script, w in payouts if w > 0]
    total = sum(w for _, w in weights)
    if not weights or total <= 0 or total != total or total == float("inf"):
        raise ValueError("payouts need at least one positive, finite weight")
    values = [int(amount * w // total) for _, w in weights]
    values[max(range(len(weights)), key=lambda i: (weights[i][1], -i))] += amount - sum(values)
    return [TxOut(v, s) for (s, _), v in zip(weights, values) if v > 0]


def coinbase_branch(txids: list[bytes]) -> list[bytes]:
    """The merkle branch of the coinbase (leaf 0) given the other transactions' ids: root = fold(sha256d(x + b))."""
    branch, layer = [], [bytes(32)] + list(txids)
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        branch.append(layer[1])
        layer = [bytes(32)] + [sha256d(layer[i] + layer[i + 1]) for i in range(2, len(layer), 2)]
    return branch


def root_from_branch(coinbase_txid: bytes, branch: list[bytes]) -> bytes:
    root = coinbase_txid
    for sibling in branch:
        root = sha256d(root + sibling)
    return root


@dataclass
class BlockTemplate:
    height: int
    prev_hash: bytes
    bits: int
    time: int
    txs: list[Transaction]          # the mempool transactions, parents first
    fees: int
    subsidy: int
    steward_script: bytes
    steward_payout: int
    payout_script: bytes
    version: int = 1
    payouts: list[tuple[bytes, float]] | None = None     # a pool's split of the miners' part (else payout_script)

    @property
    def miner_amount(self) -> int:
        return self.subsidy - self.steward_payout + self.fees

    def miner_outputs(self) -> list[TxOut]:
        if self.payouts:
            return split_payout(self.miner_amount, self.payouts)
        return [TxOut(self.miner_amount, self.payout_script)]

    def coinbase(self, commitment: pc_block.CoinbaseCommitment | None, extra: bytes = b"") -> Transaction:
        """The coinbase; without a commitment it carries COMMIT_PATTERN (a pool's work)."""
        commit_script = COMMIT_PATTERN if commitment is None else commitment.script()
        outputs = self.miner_outputs() + [TxOut(self.steward_payout, self.steward_script), TxOut(0, commit_script)]
        return coinbase_tx(self.height, outputs, extra)

    def header(self, coinbase: Transaction, nonce: int = 0) -> BlockHeader:
        root = merkle_root([coinbase.txid] + [t.txid for t in self.txs])
        return BlockHeader(self.version, self.prev_hash, root, self.time, self.bits, nonce)


def make_template(chain, payout_script: bytes, now: int, max_tx_bytes: int | None = None,
                  payouts: list[tuple[bytes, float]] | None = None) -> BlockTemplate:
    """A template on the chain's tip: time max(now, median time past + 1), the bits the retarget requires; with
    `payouts` the miners' part is split among them (split_payout) instead of paid to `payout_script`."""
    params = chain.params
    height = chain.height + 1
    time = max(now, chain.median_time_past() + 1)
    entries = chain.mempool.select(max_tx_bytes if max_tx_bytes is not None else params.max_block_size // 2)
    return BlockTemplate(height, chain.tip.hash, chain.next_bits(time), time, [e.tx for e in entries],
                         sum(e.fee for e in entries), params.subsidy(height), chain.election.steward,
                         params.steward_payout(height), bytes(payout_script), payouts=payouts)


# --- announcements ------------------------------------------------------------------------------------------------

def aged_target(ann: bytes, block_height: int, pcp_version: int = PCP_VERSION) -> int:
    a = ann_mod.Announcement.parse(ann)
    if block_height < difficulty.ANN_WAIT_PERIOD:
        return a.work_bits
    return difficulty.aged_ann_target(a.work_bits, block_height - a.parent_block_height, pcp_version)


def usable_announcements(chain, anns, block_height: int) -> list[bytes]:
    """The announcements that validate against this chain (faithfully, or fast mode where the params allow it)
    and are usable at `block_height` (parent on the main chain, aged target valid)."""
    rules = chain.params.pc_rules
    out = []
    for raw in anns:
        try:
            a = ann_mod.Announcement.parse(raw)
        except ann_mod.AnnValidationError:
            continue
        parent = chain.block_hash_at(a.parent_block_height)
        if parent is None or a.parent_block_height >= block_height:
            continue
        if aged_target(raw, block_height) == difficulty.INVALID_TARGET:
            continue
        if ann_mod.is_valid(raw, parent, min_v1_parent_height=rules.min_v1_parent_height,
                            allow_fast=rules.allow_fast_anns):
            out.append(bytes(raw))
    return out


def choose_announcements(anns, block_height: int, block_bits: int, pcp_version: int = PCP_VERSION) -> list[bytes]:
    """§5.10 block miner's choice: group by aged target, sort the classes by effective work (lowest target
    first) and keep the prefix whose effective target is the highest (easiest)."""
    classes: dict[int, list[bytes]] = {}
    for raw in anns:
        t = aged_target(raw, block_height, pcp_version)
        if t != difficulty.INVALID_TARGET:
            classes.setdefault(t, []).append(bytes(raw))
    best, best_target, taken = [], -1, []
    for target in sorted(classes, key=difficulty.compact_to_big):
        taken = taken + classes[target]
        eff = difficulty.compact_to_big(difficulty.effective_target(block_bits, target, len(taken), pcp_version))
        if eff > best_target:
            best, best_target = taken, eff
    return best


def mine_announcements(chain, parent_height: int, count: int, work_bits: int, *, hard_nonce: int | None = None,
                       fast_depth: int | None = None, signing_key: bytes = bytes(32),
                       should_stop: Callable[[], bool] | None = None) -> list[bytes]:
    """Mine `count` announcements on the main chain's block at `parent_height` (faithful version 1 unless
    `fast_depth`); one table pair serves many soft nonces, the hard nonce moves on when it runs dry."""
    parent = chain.block_hash_at(parent_height)
    if parent is None:
        raise ValueError(f"no main-chain block at height {parent_height}")
    version = 1 if fast_depth is None else ann_mod.fast_version(fast_depth)
    nonce = int.from_bytes(os.urandom(4), "little") if hard_nonce is None else hard_nonce
    out: list[bytes] = []
    while len(out) < count:
        template = ann_mod.Announcement(version=version, hard_nonce=nonce, work_bits=work_bits,
                                        parent_block_height=parent_height, signing_key=bytes(signing_key))
        nonce = (nonce + 1) & 0xFFFFFFFF
        miner = ann_mod.AnnMiner(template, parent)
        try:
            miner.prepare()
        except RandHashError:
            continue
        for found in miner.search():
            out.append(found.pack())
            if len(out) >= count or (should_stop is not None and should_stop()):
                break
        if should_stop is not None and should_stop():
            break
    return out


# --- the block miner ----------------------------------------------------------------------------------------------

@dataclass
class MinedBlock:
    block: Block
    hashes: int                 # nonce2 values tried
    ann_count: int
    effective_target: int


def solve(template: BlockTemplate, anns, *, max_tries: int = 1 << 32, start_nonce2: int = 0,
          should_stop: Callable[[], bool] | None = None, signing_keys: dict | None = None,
          extra: bytes = b"", pcp_version: int = PCP_VERSION) -> MinedBlock | None:
    """Choose announcements, build the coinbase and header, and search nonce2 for a PacketCrypt proof."""
    chosen = choose_announcements(anns, template.height, template.bits, pcp_version)
    if not chosen:
        raise ValueError(f"no announcement is usable at height {template.height}")
    ann_set = pc_block.BlockAnnSet.build(chosen, template.height, pcp_version)
    coinbase = template.coinbase(ann_set.commitment, extra)
    header = template.header(coinbase)
    header80 = header.serialize()
    target = ann_set.effective_target(template.bits, pcp_version)
    sol = pc_block.mine_block(header80, ann_set, target, start_nonce2=start_nonce2, max_tries=max_tries,
                              should_stop=should_stop, version=pcp_version)
    if sol is None:
        return None
    proof = pc_block.make_proof(ann_set, sol, signing_keys, pcp_version, header80)
    block = Block(header, (coinbase, *template.txs), proof)
    return MinedBlock(block, sol.nonce2 - start_nonce2 + 1, ann_set.tree.ann_count, target)


def mine_block(chain, payout_script: bytes, anns, now: int, **kwargs) -> Block | None:
    """Template on the tip + solve: a block ready for chain.process_block, or None if the tries ran out."""
    mined = solve(make_template(chain, payout_script, now), anns, **kwargs)
    return None if mined is None else mined.block


# --- difficulty for a hash rate -----------------------------------------------------------------------------------

def _icbrt(n: int) -> int:
    x = 1 << ((n.bit_length() + 2) // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            break
        x = y
    while x ** 3 > n:
        x -= 1
    while (x + 1) ** 3 <= n:
        x += 1
    return x


def expected_hashes(block_bits: int, ann_target: int, ann_count: int, pcp_version: int = PCP_VERSION) -> int:
    """Block-hash attempts a block takes on average with these announcements."""
    return difficulty.work_for_compact(difficulty.effective_target(block_bits, ann_target, ann_count, pcp_version))


def starting_bits(hashes_per_second: float, block_time: float, ann_target: int, ann_count: int, *,
                  pow_limit_bits: int, pcp_version: int = PCP_VERSION) -> int:
    """Block bits at which a miner of `hashes_per_second`, with `ann_count` announcements of aged target
    `ann_target`, needs `block_time` seconds per block on average (never easier than the pow limit)."""
    want = max(int(hashes_per_second * block_time), 1)
    ann_work = difficulty.work_for_compact(ann_target)
    if pcp_version >= 2:
        block_work = _icbrt(want * 1024 * ann_work * ann_count * ann_count)
    else:
        block_work = _icbrt(want * ann_work * ann_count)
    target = min(difficulty.target_for_work(max(block_work, 1)), difficulty.compact_to_big(pow_limit_bits))
    return difficulty.big_to_compact(target)


def measure_hashrate(clock: Callable[[], float], seconds: float = 1.0, ann_count: int = 64) -> float:
    """Block hashes per second of this process (PacketCrypt block hash over stand-in announcements)."""
    anns = [os.urandom(ann_mod.ANN_SIZE) for _ in range(ann_count)]
    header = os.urandom(80)
    start = clock()
    n = 0
    while clock() - start < seconds:
        pc_block.pc_hash(header, n, anns)
        n += 1
    return n / max(clock() - start, 1e-9)
