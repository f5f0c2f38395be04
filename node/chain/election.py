"""The Network Steward election (pkt-reference.md §6; pktd `blockchain/election.go`).

Each output may vote with the suffix `<for> <against> OP_VOTE` (script.votes); its weight is its value while it is
unspent. Per block:
  disapproval' = disapproval at the parent + value of created outputs voting against the current steward
                 - value of spent ones (btcd's view quirk kept: an output created and spent in the same block only
                 subtracts)
  if disapproval' <= total_money(height) / 2 (integer division, half of all PKT ever mined): same steward
  else a full election over the whole UTXO set (and the block's changes): the candidate with the highest approval
       wins and the new disapproval is the winner's disapproval; with no approval at all the steward stays.
The coinbase of a block pays the steward of its parent's state. Ties: pktd walks a Go map (random order), so a
tie has no defined winner there; pktlab picks the lowest candidate script bytes among the tied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .params import ChainParams
from .script import votes


@dataclass(frozen=True)
class ElectionState:
    steward: bytes            # the current Network Steward's pkScript
    disapproval: int          # units voting against it

    @classmethod
    def initial(cls, params: ChainParams) -> "ElectionState":
        return cls(params.initial_steward_script, 0)


@dataclass
class Candidate:
    approval: int = 0
    disapproval: int = 0


def tally(ballots: Iterable[tuple[bytes, int]]) -> dict[bytes, Candidate]:
    """castBallot over (pkScript, value) pairs; a negative value withdraws a vote."""
    out: dict[bytes, Candidate] = {}
    for script, value in ballots:
        vote_for, vote_against = votes(script)
        if vote_for is not None:
            out.setdefault(vote_for, Candidate()).approval += value
        if vote_against is not None:
            out.setdefault(vote_against, Candidate()).disapproval += value
    return out


def process_block(parent: ElectionState, changes: Iterable[tuple[bytes, int, bool]], height: int,
                  params: ChainParams, utxo_ballots) -> ElectionState:
    """The election state after the block at `height`.

    `changes` are the block's (pkScript, value, spent) UTXO changes; `utxo_ballots()` yields (pkScript, value) of
    every unspent output before the block that carries a vote (called only when a full election runs)."""
    changes = list(changes)
    disapproval = parent.disapproval
    for script, value, spent in changes:
        if votes(script)[1] == parent.steward:
            disapproval += -value if spent else value
    if parent.steward and disapproval <= params.total_money(height) // 2:
        return ElectionState(parent.steward, disapproval)
    ballots = list(utxo_ballots()) + [(s, -v if spent else v) for s, v, spent in changes]
    winner, approval = parent.steward, 0
    for key, cand in sorted(tally(ballots).items()):
        if cand.approval > approval:
            winner, approval, disapproval = key, cand.approval, cand.disapproval
    return ElectionState(winner, disapproval)
