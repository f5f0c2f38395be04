"""A market tells its node's agent what it sells, so the offers travel in the node's route-server announcements.

The agent's control command ``market_offers offers=[...]`` (node/tun_switch/route_server_plane.py) takes the whole
list (an offer left out is withdrawn) and announces it at once as OFFER entities (node/route_server/announcement.py);
buyers find the offers at the route servers (``rs_offers``). The list is sent when it changes (an offer issued,
sold, locked in a swap, or its term over) and again every RESEND_S (an agent that restarted has forgotten it). A
refusal or an agent that does not answer is counted (``offers_announce_failed``) and tried again after RETRY_S.
The testbed gives a market its agent's socket only on a route-server mesh (testbed/services.py).
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter

from node.agent.control_client import AgentClient, AgentError

log = logging.getLogger(__name__)
RESEND_S = 30.0
RETRY_S = 5.0


class OfferAnnouncer:
    def __init__(self, agent_socket: str, counters: Counter):
        self.agent = AgentClient(agent_socket, timeout=5.0)
        self.counters = counters
        self.sent: list | None = None           # the list the agent last took
        self.due = 0.0                          # when to send it again even if nothing changed
        self.retry_at = 0.0                     # after a failure: not before then

    async def tick(self, offers: list, now: float) -> None:
        """``offers``: the market's offers now (MarketNode.my_offers); ``now``: Unix time."""
        want = [o for o in offers if o["end"] > now]            # a term that is over is no offer
        if (want == self.sent and now < self.due) or now < self.retry_at:
            return
        try:
            await asyncio.to_thread(self.agent.call, "market_offers", offers=want)
        except (OSError, AgentError, ValueError) as e:
            self.counters["offers_announce_failed"] += 1
            self.retry_at = now + RETRY_S
            log.warning("announcing %d offer(s): %s", len(want), e)
            return
        self.counters["offers_announced"] += 1
        self.sent, self.due, self.retry_at = want, now + RESEND_S, 0.0
