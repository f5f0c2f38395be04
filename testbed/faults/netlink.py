"""Taking link ends down and up inside their nodes, for link-down, flap and partition (the run's backend does it:
pyroute2 inside the namespaces here, the host helper on SSH hosts)."""
from __future__ import annotations

from testbed.backends.base import BackendError
from testbed.faults.base import End, FaultError


def set_link_state(mesh, ends: list[End], up: bool) -> None:
    try:
        mesh.backend.set_link_state(ends, up)
    except BackendError as e:
        raise FaultError(str(e)) from None
