"""Byzantine inputs: garbage switch frames injected on a link, which the receiving node must count and drop."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from node.agent.control_client import AgentError
from testbed.backends.base import BackendError
from testbed.faults.base import End, Fault, FaultError, link_ends
from testbed.faults.measure import drops
from testbed.waiting import wait_until

PEER_PORT = 7100


@dataclass
class Malformed(Fault):
    """Garbage switch frames injected on a link: to the peer's port, from our end's address and port, so they
    pass the peer's connected socket and reach its switch, which must count and drop them."""
    kind: ClassVar[str] = "malformed"
    instant: ClassVar[bool] = True
    MAIN: ClassVar[str] = "count"
    link: str = ""
    count: int = 100

    def _end(self, mesh) -> End:
        return link_ends(mesh, self.link)[0][0]

    def _counted(self, mesh) -> int:
        """Drops at the peer and its neighbours: a garbage frame whose first bytes happen to form a valid
        label is forwarded once and dropped at the next hop."""
        e = self._end(mesh)
        return sum(drops(mesh, n) for n in [e.peer] + mesh.topo.neighbors(e.peer))

    def baseline(self, mesh) -> None:
        self.state["drops_before"] = self._counted(mesh)

    def apply(self, mesh) -> None:
        e = self._end(mesh)
        count = int(self.count)
        if not 1 <= count <= 100000:
            raise FaultError("malformed count must be in 1..100000")
        rng = random.Random(f"{mesh.run.state.get('seed')}:{self.id}")
        frames = [bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 5, 11, 13, 40, 120))))
                  for _ in range(count)]
        try:
            mesh.backend.send_udp(e.node, e.addr, e.peer_addr, PEER_PORT, PEER_PORT, frames)
        except BackendError as err:
            raise FaultError(f"malformed {self.link}: {err}") from None

    def heal(self, mesh) -> None:
        pass

    def check(self, mesh) -> str:
        e = self._end(mesh)
        if not wait_until(lambda: self._counted(mesh) - self.state["drops_before"] >= 0.95 * int(self.count), 5):
            got = self._counted(mesh) - self.state["drops_before"]
            raise FaultError(f"malformed {self.link}: {e.peer} and its neighbours counted {got} drops for "
                             f"{self.count} frames")
        got = self._counted(mesh) - self.state["drops_before"]
        at_peer = drops(mesh, e.peer)
        st = self._peer_status(mesh, e.peer)
        if not st or not st.get("healthy"):
            raise FaultError(f"malformed {self.link}: {e.peer}'s agent is not healthy")
        return f"{got} drops counted for {self.count} frames ({e.peer}: {at_peer} in total), agent healthy"

    def _peer_status(self, mesh, node):
        try:
            return mesh.agent(node).call("status", timeout=2)
        except (OSError, AgentError, ValueError):
            return None
