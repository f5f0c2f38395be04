"""The devices that carry a seller's leases, as its market reaches them: the agents at both ends of each lease's
link (node/agent/agent.py's control socket), which the seller's operator runs (a Cloud ISP operates its links'
ends; in the testbed, the run's agents).

Two things the market asks them (channels.py's pay-as-you-go leases):

* ``carried(lease)``: the bytes the lease carried so far, the sum over both ends of the agents' ingress counters of
  that lease (``leases`` -> ``ingress`` -> ``"<link>/<lease>"`` -> ``bytes``), as the referee reads them
  (referee.py, testbed/market_view.py): a lease's traffic in both directions;
* ``grant(lease, holder, expires_at)``: the agents' ``lease_grant`` at both ends (holder a cjdns key ``....k``,
  expires_at a Unix time): the lease is the holder's until then; a grant that expires now withdraws it.

Every failure is a :class:`LeaseDeviceError` naming the device and why.
"""
from __future__ import annotations

import asyncio

from node.agent.control_client import AgentClient, AgentError


class LeaseDeviceError(RuntimeError):
    pass


class AgentLeases:
    """``sockets``: {lease id: [the control socket paths of the agents at its link's ends]}."""

    def __init__(self, sockets: dict[str, list[str]], timeout: float = 5.0):
        self.sockets, self.timeout = {k: list(v) for k, v in sockets.items()}, timeout

    def has(self, lease: str) -> bool:
        return bool(self.sockets.get(lease))

    def _call(self, path: str, cmd: str, args: dict) -> dict:
        try:
            return AgentClient(path, self.timeout).call(cmd, **args)
        except (OSError, ValueError, AgentError) as e:
            raise LeaseDeviceError(f"agent {path}: {cmd}: {e}") from None

    async def _each(self, lease_id: str, cmd: str, args: dict) -> list[dict]:
        if not self.has(lease_id):
            raise LeaseDeviceError(f"no device carries lease {lease_id!r}")
        return [await asyncio.to_thread(self._call, path, cmd, args) for path in self.sockets[lease_id]]

    async def carried(self, lease: str) -> int:
        total = 0
        for answer in await self._each(lease, "leases", {}):
            total += sum(c.get("bytes", 0) for key, c in answer.get("ingress", {}).items()
                         if key.rsplit("/", 1)[-1] == lease)
        return total

    async def grant(self, lease: str, holder: str, expires_at: float) -> None:
        await self._each(lease, "lease_grant", {"lease": lease, "holder": holder, "expires_at": expires_at})
