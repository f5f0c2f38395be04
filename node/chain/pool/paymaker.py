"""The pool's PayMaker: PPLNS over announcement and share events (pkt-reference.md §5.10; PacketCrypt
`js/PayMaker.js`, the version with poolFee). Pure code: events in, a payout split out; times in milliseconds.

Events (what the handlers and the master POST to /events, newline-separated JSON):
    {"type": "anns", "payTo", "accepted", "unsigned", "totalLen", "target", "time", "eventId", ...}
    {"type": "share", "payTo", "block", "target", "time", "eventId", ...}
    {"type": "block", "hash", "height", "difficulty", "time", "eventId"}

Credit (difficulty at an event's time = the newest block event before it: difficulty * BASE):
    share  workMultiple(target) / diff
    anns   workMultiple(target) * payable / diff, payable = accepted (- unsigned when the pool signs, a pktlab pool
           does not) - (totalLen >> 14); 0 for a target above 0x207fffff
where workMultiple(T) = work(T) / BASE and BASE = the work at the chain's pow limit (node/chain/pool/work.py).
Announcement events are summed per payTo in time slots of `ann_slot_s` (the annCompressor; a slot holds the
events whose time falls in [k*span, (k+1)*span), PayMaker.js opens slots in steps of span from the first one).

Split (computeWhoToPay): walking back from the newest share, each pays credit / pplns_blk_x to its payTo until
block_payout_fraction is used up; walking back through the ann slots (each slot's addresses in the order they first
appeared in it), each pays credit / pplns_ann_x until the rest (1 - block_payout_fraction) is used up; whatever is
left of either goes to default_address. Then pool_fee goes to pool_fee_address and every other share is scaled
by (1 - pool_fee). The result's fractions add up to 1 (floating point).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from ..packetcrypt import difficulty

MAX_TARGET = 0x207FFFFF
DEFAULT_EVENT_TARGET = 0x20000FFF          # an event without a target (PayMaker.js handleEvents)


@dataclass
class PayMakerConfig:
    default_address: str
    pool_fee_address: str = ""
    base_work: int = 4096
    block_payout_fraction: float = 0.5
    pplns_blk_x: float = 2.0
    pplns_ann_x: float = 0.125
    pool_fee: float = 0.2
    ann_slot_s: float = 60.0
    history_s: float = 2 * 86400.0


@dataclass
class _Slot:
    end: float
    credits: OrderedDict = field(default_factory=OrderedDict)     # payTo -> [credit, accepted]


class PayMaker:
    def __init__(self, cfg: PayMakerConfig, valid_address=lambda a: isinstance(a, str) and bool(a)):
        if not 0 <= cfg.block_payout_fraction <= 1:
            raise ValueError("block_payout_fraction must be between 0 and 1")
        if cfg.pplns_blk_x <= 0 or cfg.pplns_ann_x <= 0 or cfg.ann_slot_s <= 0:
            raise ValueError("the PPLNS constants and the slot length must be positive")
        self.cfg = cfg
        self.valid_address = valid_address
        self.blocks: list[dict] = []        # sorted by (time, eventId)
        self.shares: list[dict] = []
        self.slots: dict[int, _Slot] = {}
        self.seen: set[str] = set()
        self.newest = 0.0
        self.accepted = 0                   # events taken (the input count a payout is computed from)

    # --- events -----------------------------------------------------------------------------------------------
    def work_multiple(self, target: int) -> float:
        return difficulty.work_for_compact(target) / self.cfg.base_work

    def _difficulty_at(self, time_ms: float) -> float:
        for b in reversed(self.blocks):
            if b["time"] < time_ms:
                return b["difficulty"] * self.cfg.base_work
        return -1.0

    def add(self, ev) -> str | None:
        """Take one event; returns a warning for one that is not taken (None when it was)."""
        if not isinstance(ev, dict):
            return "not an object"
        ev = dict(ev)
        if ev.get("accepted"):
            ev["type"] = "anns"
        kind, eid, t = ev.get("type"), ev.get("eventId"), ev.get("time")
        if not isinstance(kind, str):
            return "type field is missing or not a string"
        if not isinstance(eid, str):
            return "eventId is missing or not a string"
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            return "time is missing or not a number"
        if t < self.newest - self.cfg.history_s * 1000:
            return "too old"
        if eid in self.seen:
            return "duplicate event"
        if kind in ("share", "anns") and not ev.get("target"):
            ev["target"] = DEFAULT_EVENT_TARGET
        if kind == "block":
            if not _number(ev.get("height")) or not _number(ev.get("difficulty")):
                return "height or difficulty is missing or not a number"
            _insert(self.blocks, ev)
        elif kind == "share":
            if not self.valid_address(ev.get("payTo")):
                return f"invalid payTo address [{ev.get('payTo')}]"
            diff = self._difficulty_at(t)
            ev["credit"] = 0.0 if diff < 1 else self.work_multiple(int(ev["target"])) / diff
            _insert(self.shares, ev)
        elif kind == "anns":
            if not self.valid_address(ev.get("payTo")):
                return f"invalid payTo address [{ev.get('payTo')}]"
            for key in ("accepted", "unsigned", "totalLen"):
                if not _number(ev.get(key)):
                    return f"{key} missing or not a number"
            diff = self._difficulty_at(t)
            ev["credit"] = 0.0 if diff < 1 else self._payable_work(ev) / diff
            slot_no = int(t // (self.cfg.ann_slot_s * 1000))
            slot = self.slots.setdefault(slot_no, _Slot((slot_no + 1) * self.cfg.ann_slot_s * 1000))
            c = slot.credits.setdefault(ev["payTo"], [0.0, 0])
            c[0] += ev["credit"]
            c[1] += int(ev["accepted"])
        else:
            return f"unhandled event type [{kind}]"
        self.seen.add(eid)
        self.newest = max(self.newest, t)
        self.accepted += 1
        self._forget_old()
        return None

    def _payable_work(self, ev: dict) -> float:
        if int(ev["target"]) > MAX_TARGET:
            return 0.0
        payable = max(0, int(ev["accepted"]) - (int(ev["totalLen"]) >> 14))
        return self.work_multiple(int(ev["target"])) * payable

    def _forget_old(self) -> None:
        cutoff = self.newest - self.cfg.history_s * 1000
        for events in (self.blocks, self.shares):
            while events and events[0]["time"] < cutoff:
                self.seen.discard(events.pop(0)["eventId"])
        for k in [k for k, s in self.slots.items() if s.end < cutoff]:
            del self.slots[k]

    # --- the split --------------------------------------------------------------------------------------------------
    def who_to_pay(self, maxtime: float = math.inf) -> dict:
        cfg = self.cfg
        warn = []
        blk, ann = {}, {}
        remaining = cfg.block_payout_fraction
        for s in reversed(self.shares):
            if s["time"] > maxtime:
                continue
            to_pay = min(s["credit"] / cfg.pplns_blk_x, remaining)
            blk[s["payTo"]] = blk.get(s["payTo"], 0.0) + to_pay
            remaining -= to_pay
            if remaining == 0:
                break
        if remaining:
            warn.append(f"Ran out of block shares to pay paying [{remaining * 100}%] to defaultAddress")
            blk[cfg.default_address] = blk.get(cfg.default_address, 0.0) + remaining
        remaining = 1 - cfg.block_payout_fraction
        for _, slot in sorted(self.slots.items(), reverse=True):
            if slot.end > maxtime or remaining == 0:
                continue
            for pay_to, (credit, _accepted) in slot.credits.items():
                if credit == 0:
                    break                    # PayMaker.js returns from the slot's callback here
                to_pay = min(credit / cfg.pplns_ann_x, remaining)
                ann[pay_to] = ann.get(pay_to, 0.0) + to_pay
                remaining -= to_pay
                if remaining == 0:
                    break
        if remaining:
            warn.append(f"Ran out of ann shares to pay paying [{remaining * 100}%] to defaultAddress")
            ann[cfg.default_address] = ann.get(cfg.default_address, 0.0) + remaining
        fee = 0.0
        result: dict[str, float] = {}
        if cfg.pool_fee:
            if not 0 <= cfg.pool_fee < 1:
                warn.append(f"invalid poolFee {cfg.pool_fee} must be between 0 and 1")
            elif not self.valid_address(cfg.pool_fee_address):
                warn.append(f"invalid poolFeeAddress {cfg.pool_fee_address}")
            else:
                fee = cfg.pool_fee
                result[cfg.pool_fee_address] = fee
        for pay_to, credit in sorted(list(blk.items()) + list(ann.items()), key=lambda kv: -kv[1]):
            result[pay_to] = result.get(pay_to, 0.0) + credit * (1 - fee)
        return {"result": result, "warn": warn, "poolFee": fee, "events": self.accepted,
                "blockMiners": cfg.block_payout_fraction * (1 - fee),
                "annMiners": (1 - cfg.block_payout_fraction) * (1 - fee),
                "blockMinerCredits": blk, "annMinerCredits": ann}

    def stats(self) -> dict:
        return {"blocks": len(self.blocks), "shares": len(self.shares), "annSlots": len(self.slots),
                "events": self.accepted}


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _insert(events: list[dict], ev: dict) -> None:
    """Keep (time, eventId) order, as the JS red-black trees do."""
    key = (ev["time"], ev["eventId"])
    i = len(events)
    while i and (events[i - 1]["time"], events[i - 1]["eventId"]) > key:
        i -= 1
    events.insert(i, ev)
