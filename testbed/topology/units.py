"""Units in topology files, and TopologyError, the error every part of the topology package raises.

Values carry units: rates ``"10mbit"`` (bit/s, SI prefixes), times ``"5ms"``, fractions ``"1%"``. A bare number
where a unit is needed is an error, except 0 (which needs none).
"""
from __future__ import annotations

import re
from decimal import Decimal


class TopologyError(ValueError):
    """A topology cannot be used. ``errors`` lists every problem found; str() shows them all."""

    def __init__(self, message: str | list[str]):
        self.errors = [message] if isinstance(message, str) else list(message)
        super().__init__("\n".join(self.errors))



_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]{1,4}))?\s*([A-Za-z%µ/]*)\s*$")
RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}
TIME_UNITS = {"s": Decimal(1), "ms": Decimal("1e-3"), "us": Decimal("1e-6"), "µs": Decimal("1e-6"),
              "ns": Decimal("1e-9")}
MAX_RATE = 10**15  # 1 Pbit/s: anything above is a typo
MAX_TIME = Decimal(3600)


def _split_number(text, what: str) -> tuple[Decimal, str]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise TopologyError(f"expected a {what} string such as {_EXAMPLE[what]!r}, got {text!r}")
    if isinstance(text, (int, float)):
        if text == 0:
            return Decimal(0), ""
        raise TopologyError(f"missing unit in {text!r} (write e.g. {_EXAMPLE[what]!r})")
    m = _NUMBER.match(text)
    if not m:
        if text.strip().startswith("-"):
            raise TopologyError(f"negative {what} {text!r}")
        raise TopologyError(f"bad {what} {text!r} (write e.g. {_EXAMPLE[what]!r})")
    number = Decimal(m.group(1) + (f"e{m.group(2)}" if m.group(2) else ""))
    unit = m.group(3)
    if not unit and number != 0:
        raise TopologyError(f"missing unit in {text!r} (write e.g. {_EXAMPLE[what]!r})")
    return number, unit


_EXAMPLE = {"rate": "10mbit", "time": "5ms", "fraction": "1%"}


def parse_rate(value) -> int | None:
    """'10mbit' -> 10_000_000 bit/s; None or 'unlimited' -> None (unshaped). Raises TopologyError."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("unlimited", "none")):
        return None
    number, unit = _split_number(value, "rate")
    if unit.lower() not in RATE_UNITS:
        if number == 0 and not unit:
            raise TopologyError("rate must be positive (use null or 'unlimited' for an unshaped link)")
        hint = " (bytes are not accepted: use bit units)" if unit.lower().endswith(("bps", "b/s")) else ""
        raise TopologyError(f"unknown rate unit {unit!r} in {value!r}; use one of {', '.join(RATE_UNITS)}{hint}")
    bps = number * RATE_UNITS[unit.lower()]
    if bps > MAX_RATE:
        raise TopologyError(f"rate {value!r} is too large (at most 1000tbit)")
    if bps != bps.to_integral_value():
        raise TopologyError(f"rate {value!r} is not a whole number of bit/s")
    if bps <= 0:
        raise TopologyError("rate must be positive (use null or 'unlimited' for an unshaped link)")
    return int(bps)


def parse_time(value) -> float:
    """'5ms' -> 0.005 seconds. Raises TopologyError."""
    number, unit = _split_number(value, "time")
    if unit and unit not in TIME_UNITS:
        raise TopologyError(f"unknown time unit {unit!r} in {value!r}; use one of s, ms, us, ns")
    seconds = number * TIME_UNITS.get(unit, Decimal(1))
    if seconds > MAX_TIME:
        raise TopologyError(f"time {value!r} is too large (at most 3600s)")
    return float(seconds)


def parse_fraction(value) -> float:
    """'1%' -> 0.01. Raises TopologyError."""
    number, unit = _split_number(value, "fraction")
    if unit and unit != "%":
        raise TopologyError(f"unknown unit {unit!r} in {value!r}; write a percentage such as '1%'")
    if number > 100:
        raise TopologyError(f"fraction {value!r} is above 100%")
    return float(number / 100)


def format_rate(bps: int | None) -> str | None:
    if bps is None:
        return None
    if bps == 0:
        return "0bit"
    for unit in ("tbit", "gbit", "mbit", "kbit"):
        if bps % RATE_UNITS[unit] == 0:
            return f"{bps // RATE_UNITS[unit]}{unit}"
    return f"{bps}bit"


def format_time(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit in ("s", "ms", "us", "ns"):
        number = Decimal(repr(seconds)) / TIME_UNITS[unit]
        if number >= 1 and number == number.to_integral_value():
            return f"{int(number)}{unit}"
    return f"{seconds!r}s"


def format_fraction(fraction: float) -> str:
    if fraction == 0:
        return "0%"
    # scaling the shortest decimal form by 100 is exact, so the text reads back as the same float
    return f"{format((Decimal(repr(fraction)) * 100).normalize(), 'f')}%"
