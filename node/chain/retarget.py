"""Difficulty retarget and median time (pktd `blockchain/difficulty.go`, `mediantime`; pkt-reference.md §6).

  every retarget_interval blocks (2016): new = old * clamp(actual, timespan/4, timespan*4) / timespan, capped at
  the pow limit, where actual = time(last) - time(last - (interval - 1)) (btcd's window) and timespan =
  interval * block time; otherwise the parent's bits.
  min-difficulty rule (pktd, below min_diff_reduction_until = 50000): a block more than 2 block times after its
  parent may use the pow limit; otherwise the bits of the last block that did not use it (or sits on a retarget
  boundary).
  median time past = the median of the last 111 block times; a new block's time must be above it.

Headers are passed as `HeaderInfo`s and an `ancestor(height)` lookup on the same branch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .packetcrypt.difficulty import big_to_compact, compact_to_big
from .params import ChainParams


@dataclass(frozen=True)
class HeaderInfo:
    height: int
    time: int
    bits: int


def compute_next_target(params: ChainParams, actual_timespan: int, bits: int) -> int:
    timespan = params.target_timespan
    clamped = min(max(actual_timespan, timespan // params.retarget_clamp), timespan * params.retarget_clamp)
    new = compact_to_big(bits) * clamped // timespan
    return big_to_compact(min(new, params.pow_limit))


def next_bits(params: ChainParams, last: HeaderInfo | None, new_time: int,
              ancestor: Callable[[int], HeaderInfo]) -> int:
    """The bits the block after `last` must carry (calcNextRequiredDifficulty)."""
    if last is None:
        return params.starting_bits
    interval = params.retarget_interval
    if (last.height + 1) % interval != 0:
        if last.height < params.min_diff_reduction_until:
            if new_time > last.time + params.min_diff_reduction_time:
                return params.pow_limit_bits
            node = last
            while node.height % interval != 0 and node.bits == params.pow_limit_bits:
                node = ancestor(node.height - 1)
            return node.bits
        return last.bits
    first = ancestor(max(last.height - (interval - 1), 0))
    return compute_next_target(params, last.time - first.time, last.bits)


def median_time_past(params: ChainParams, last: HeaderInfo, ancestor: Callable[[int], HeaderInfo]) -> int:
    """CalcPastMedianTime: the median of the times of `last` and up to 110 blocks before it."""
    start = max(last.height - params.median_time_blocks + 1, 0)
    times = sorted([ancestor(h).time for h in range(start, last.height)] + [last.time])
    return times[len(times) // 2]
