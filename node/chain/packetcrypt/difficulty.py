"""PacketCrypt difficulty arithmetic (pkt-reference.md §5.7; pktd `blockchain/packetcrypt/difficulty/diff.go`).

Targets travel as bitcoin "compact" u32s; work is the expected number of hashes, 2^256 // (target + 1).
Version 1 and version 2 refer to the PacketCrypt proof (PcP) version of the block being checked.
"""
from __future__ import annotations

TWO_256 = 1 << 256
MAX_TARGET_COMPACT = 0x207FFFFF       # the easiest target any PacketCrypt rule accepts
INVALID_TARGET = 0xFFFFFFFF           # "announcement not usable" marker of the aging rules
ANN_WAIT_PERIOD = 3                   # parentBlockHeight -> x -> y -> valid (C Conf.h)
_U64 = (1 << 64) - 1


def compact_to_big(compact: int) -> int:
    """Bitcoin CompactToBig (the sign bit gives a negative number, as in Go)."""
    size = (compact >> 24) & 0xFF
    word = compact & 0x007FFFFF
    n = word >> (8 * (3 - size)) if size <= 3 else word << (8 * (size - 3))
    return -n if compact & 0x00800000 else n


def big_to_compact(n: int) -> int:
    """Bitcoin BigToCompact."""
    if n == 0:
        return 0
    negative = n < 0
    n = abs(n)
    size = (n.bit_length() + 7) // 8
    word = n << (8 * (3 - size)) if size <= 3 else n >> (8 * (size - 3))
    if word & 0x00800000:          # the mantissa's top bit is the sign: move one byte into the exponent
        word >>= 8
        size += 1
    compact = (size << 24) | word
    return compact | 0x00800000 if negative else compact


def work_for_target(target: int) -> int:
    """Expected hashes to meet a big-integer target. A negative target (compact bits with the sign bit set, e.g.
    0x01810000 = -1) can never be met and counts as no work, as in btcd CalcWork; callers that receive bits from
    the network reject such targets before they matter (node/chain/consensus.py, Reason.BAD_BITS)."""
    if target < 0:
        return 0
    return TWO_256 // (target + 1)


def target_for_work(work: int) -> int:
    """The big-integer target for a work; 2^256 for no work, 0 when the work is not reachable (C/Rust)."""
    if work == 0:
        return TWO_256
    if work >= TWO_256:
        return 0
    return (TWO_256 - work) // work


def work_for_compact(compact: int) -> int:
    return work_for_target(compact_to_big(compact))


def _effective_work(block_work: int, ann_work: int, ann_count: int, version: int) -> int:
    if ann_work == 0 or ann_count == 0:
        return TWO_256 - 1          # no announcements: impossible work
    w = block_work ** 3
    if version >= 2:
        return (w >> 10) // ann_work // (ann_count * ann_count)
    return w // ann_work // ann_count


def effective_target(block_target: int, ann_target: int, ann_count: int, version: int = 2) -> int:
    """The compact target a block's PacketCrypt hash must meet given its announcements (GetEffectiveTarget).
    A negative block target (sign bit set) is unsatisfiable: 0 (pktd rejects such headers before asking)."""
    if compact_to_big(block_target) < 0:
        return 0
    w = _effective_work(work_for_compact(block_target), work_for_compact(ann_target), ann_count, version)
    return min(big_to_compact(target_for_work(w)), MAX_TARGET_COMPACT)


def hashrate_multiplier(ann_target: int, ann_count: int) -> int:
    """v2: how much the announcements multiply the block miner's hashrate, W_ann * N^2 >> 10 (saturating u64)."""
    return min((work_for_compact(ann_target) * ann_count * ann_count) >> 10, _U64)


def aged_ann_target(target: int, age: int, version: int = 2) -> int:
    """The target an announcement is valued at `age` blocks after its parent; INVALID_TARGET if unusable."""
    if age < ANN_WAIT_PERIOD:
        return INVALID_TARGET
    if version >= 2:
        if age == ANN_WAIT_PERIOD:
            return target
        big = compact_to_big(target)
        if big > 0 and age - ANN_WAIT_PERIOD > 255:                  # would exceed 255 bits anyway
            return INVALID_TARGET
        aged = big << (age - ANN_WAIT_PERIOD) if big > 0 else big   # work halves every block
        if aged.bit_length() > 255:
            return INVALID_TARGET
        return big_to_compact(aged)
    big = compact_to_big(target)
    if age == ANN_WAIT_PERIOD:
        return big_to_compact(big)
    work = work_for_target(big) // (age - ANN_WAIT_PERIOD)         # v1: work decays as 1/(age-3)
    out = big_to_compact(target_for_work(work))
    return INVALID_TARGET if out > MAX_TARGET_COMPACT else out


def is_ann_min_diff_ok(target: int, version: int = 2) -> bool:
    """Sanity bound on the coinbase's annLeastWorkTarget."""
    limit = MAX_TARGET_COMPACT if version >= 2 else 0x20FFFFFF
    if target == 0 or target > limit:
        return False
    big = compact_to_big(target)
    if version >= 2 and big <= 0:
        return False
    work = work_for_target(big)
    return 0 < work < TWO_256


def _log2floor(x: int) -> int:
    return x.bit_length() - 1 if x > 0 else 0


def soft_nonce_max(target: int) -> int:
    """Pc2AnnSoftNonceMax: soft nonces allowed for an announcement target (~256x the expected work)."""
    bits = 22 - _log2floor(target & 0x007FFFFF) + (0x20 - (target >> 24)) * 8 + 10
    if bits >= 24:
        return 0xFFFFFF
    return 0xFFFFFF >> (24 - bits)   # shifts of 24 or more give 0, as in Go


def hash_meets_target(hash32: bytes, target: int) -> bool:
    """pktd IsOk: the hash read as a little-endian number must be <= the target (C uses a strict '<')."""
    return int.from_bytes(hash32[:32], "little") <= compact_to_big(target)
