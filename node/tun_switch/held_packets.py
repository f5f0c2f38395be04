"""Packets held until their destination can be reached: a path (a route server's answer) or a CryptoAuth session
that can carry data.

cjdns (net/SessionManager.c) buffers a packet that needs a path lookup (one per destination, a newer one replaces
it; 30 destinations; 10 s), and it buffers user traffic while the session is below RECEIVED_KEY: for forward
secrecy no user data rides in a handshake packet, and a Hello that crosses the other side's Hello may be refused
with what it carried. The handshake is started with a message of its own.

pktlab holds up to PER_DESTINATION packets per destination (a burst of pings, a TCP SYN and its retry), for up to
MAX_DESTINATIONS destinations, each for MAX_AGE_S; what does not fit is dropped (``held_full``) and what grows old
too (``held_expired``), both counted by the node. Pure: the clock is passed in.
"""
from __future__ import annotations

from collections import deque

PER_DESTINATION = 8
MAX_DESTINATIONS = 64
MAX_AGE_S = 10.0


class HeldPackets:
    def __init__(self, per_destination: int = PER_DESTINATION, max_destinations: int = MAX_DESTINATIONS,
                 max_age_s: float = MAX_AGE_S):
        self.per_destination = per_destination
        self.max_destinations = max_destinations
        self.max_age_s = max_age_s
        self._held: dict[bytes, deque] = {}
        self.counters = {"held": 0, "released": 0, "held_full": 0, "held_expired": 0}

    def __contains__(self, ip6) -> bool:
        return ip6 in self._held

    def __len__(self) -> int:
        return len(self._held)

    def destinations(self) -> list:
        return list(self._held)

    def hold(self, ip6: bytes, packet: bytes, now: float) -> bool:
        """Hold a packet for ip6; False (counted ``held_full``) when there is no room."""
        self.expire(now)
        queue = self._held.get(ip6)
        if queue is None:
            if len(self._held) >= self.max_destinations:
                self.counters["held_full"] += 1
                return False
            queue = self._held[ip6] = deque()
        if len(queue) >= self.per_destination:
            self.counters["held_full"] += 1
            return False
        queue.append((now, packet))
        self.counters["held"] += 1
        return True

    def take(self, ip6: bytes, now: float) -> list[bytes]:
        """The packets held for ip6, oldest first (those older than max_age_s are dropped and counted)."""
        queue = self._held.pop(ip6, None) or ()
        out = [p for t, p in queue if now - t <= self.max_age_s]
        self.counters["held_expired"] += len(queue) - len(out)
        self.counters["released"] += len(out)
        return out

    def expire(self, now: float) -> None:
        for ip6 in [k for k, q in self._held.items() if now - q[-1][0] > self.max_age_s]:
            self.counters["held_expired"] += len(self._held.pop(ip6))
