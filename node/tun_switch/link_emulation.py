"""Userspace link emulation for one direction of a peer link (netem is missing on our kernels).

Pure logic, no sockets and no clock reads: `LinkEmulator.process(packet, now)` returns the list of
(departure_time, packet) pairs to send, an empty list meaning the packet was dropped. The agent's event loop
puts the result on its timer heap. When every parameter is zero the agent does not call it at all.

Semantics follow netem/tbf where they overlap:
- rate_bps: token bucket (GCRA virtual scheduling) with a burst of BURST_S seconds of traffic (at least one
  64 KiB packet); packets that would wait longer than QUEUE_LIMIT_S are dropped (reason "queue").
- loss: drop with that probability; corrupt: flip one random bit; duplicate: send a second copy.
- delay_s +/- jitter_s (uniform, never negative); reorder: with that probability a packet skips the delay
  (netem's "reorder": it overtakes the delayed ones).
"""

import math
import random
from dataclasses import asdict, dataclass, fields, replace

BURST_S = 0.005
MIN_BURST_BYTES = 65536
QUEUE_LIMIT_S = 0.2

_PROBABILITIES = ("loss", "duplicate", "reorder", "corrupt")
_TIMES = ("delay_s", "jitter_s")
# upper bounds, as for topology files (testbed/topology/units.py): beyond them a value is a typo or an attack
MAX_TIME_S = 3600.0
MAX_RATE_BPS = 10**15


@dataclass
class LinkParams:
    """One direction of a link: its capacity and what it does to packets. The one LinkParams of pktlab: the
    topology model, the agent config, set_link and the shapers all use it, in one unit per quantity (bit/s,
    seconds, fractions 0..1). The kernel shapes ``rate_bps`` (HTB) where the testbed builds the link; the agent
    emulates the rest, and the rate too where it is asked to (set_link, the rate fault)."""
    rate_bps: int | None = None      # None: unshaped
    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0

    def problems(self) -> list[str]:
        """What is out of range, field by field (empty: the parameters are usable)."""
        out = []
        r = self.rate_bps
        if r is not None and (isinstance(r, bool) or not isinstance(r, int) or not 0 < r <= MAX_RATE_BPS):
            out.append(f"rate_bps: must be a positive whole number of bit/s up to {MAX_RATE_BPS:g} or None, "
                       f"got {_short(r)}")
        for key in _TIMES + _PROBABILITIES:
            v = getattr(self, key)
            # compared as they are (no float() first): NaN, infinities and 400-digit integers fail by name
            if key in _PROBABILITIES and not _within(v, 1.0):
                out.append(f"{key}: a probability must be in [0, 1], got {_short(v)}")
            elif key in _TIMES and not _within(v, MAX_TIME_S):
                out.append(f"{key}: must be a number of seconds in [0, {MAX_TIME_S:g}], got {_short(v)}")
        return out

    @classmethod
    def from_dict(cls, data, where="link_emulation"):
        """Validate a JSON mapping of parameters (rate_bps null or 0: unshaped); unknown keys or bad values raise
        ValueError naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown parameter (known: {', '.join(sorted(known))})")
            if key == "rate_bps" and value in (None, 0):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}.{key}: expected a number, got {_short(value)}")
            values[key] = round(value) if key == "rate_bps" and isinstance(value, float) and math.isfinite(value) \
                else value
        params = cls(**values)
        for problem in params.problems():
            raise ValueError(f"{where}.{problem}")
        return replace(params, **{k: float(v) for k, v in values.items() if k != "rate_bps"})   # in range now

    def merged(self, changes, where="link_emulation"):
        """A copy with the given fields replaced (validated)."""
        data = asdict(self)
        data.update(changes)
        return LinkParams.from_dict(data, where)

    def emulated(self) -> bool:
        """Has something besides the rate (which the kernel shapes where the testbed built the link)."""
        return any((self.delay_s, self.jitter_s, self.loss, self.duplicate, self.reorder, self.corrupt))

    @property
    def active(self):
        """The agent has something to do on this direction."""
        return self.emulated() or self.rate_bps is not None

    def to_dict(self):
        return asdict(self)

    def emulation_dict(self) -> dict:
        """The agent config's "link_emulation" entry: everything but the rate."""
        return {k: v for k, v in asdict(self).items() if k != "rate_bps"}


def _within(v, limit) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= limit


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


class LinkEmulator:
    def __init__(self, params=None, rng=None):
        self.rng = rng or random.Random()
        self.params = params or LinkParams()
        self._tat = 0.0            # token bucket: theoretical arrival time of the next packet
        self.counters = {"lost": 0, "queue_dropped": 0, "duplicated": 0, "corrupted": 0, "reordered": 0}

    def set_params(self, params):
        self.params = params
        self._tat = 0.0

    @property
    def active(self):
        return self.params.active

    def process(self, packet, now):
        p = self.params
        rng = self.rng
        if p.loss and rng.random() < p.loss:
            self.counters["lost"] += 1
            return []
        depart = now
        if p.rate_bps:
            cost = len(packet) * 8.0 / p.rate_bps
            tolerance = max(BURST_S, MIN_BURST_BYTES * 8.0 / p.rate_bps)
            tat = max(self._tat, now)
            depart = max(now, tat - tolerance)
            if depart - now > QUEUE_LIMIT_S:
                self.counters["queue_dropped"] += 1
                return []
            self._tat = tat + cost
        if p.corrupt and packet and rng.random() < p.corrupt:
            packet = corrupt_one_bit(packet, rng)
            self.counters["corrupted"] += 1
        copies = 1
        if p.duplicate and rng.random() < p.duplicate:
            copies = 2
            self.counters["duplicated"] += 1
        out = []
        for _ in range(copies):
            when = depart
            if p.reorder and rng.random() < p.reorder:
                self.counters["reordered"] += 1
            else:
                delay = p.delay_s
                if p.jitter_s:
                    delay += rng.uniform(-p.jitter_s, p.jitter_s)
                when += max(0.0, delay)
            out.append((when, packet))
        return out


def corrupt_one_bit(packet, rng):
    data = bytearray(packet)
    bit = rng.randrange(len(data) * 8)
    data[bit >> 3] ^= 1 << (bit & 7)
    return bytes(data)
