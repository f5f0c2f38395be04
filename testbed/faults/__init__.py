"""Faults as data: parse, apply to a running mesh, check that they bite, heal, and list them.

    f = parse_fault("loss n1--n2 10%")        # or parse_fault({"kind": "loss", "link": "n1--n2", "loss": "10%"})
    apply_fault(mesh, f)                      # applies, logs a "fault" event, records it, checks it bites
    active_faults(mesh)                       # read from <run>/faults.json, so any process sees them
    heal(mesh, f.id)                          # or heal(mesh) for all; checks the baseline is back

Kinds (one-way variants write the link as `a->b`: only the egress of a towards b is affected):

    link-down a--b        both veth ends down (netlink, inside the two namespaces); a->b: 100 % loss a->b
    flap a--b period=2s [jitter=0.5s]   a helper process takes the link down and up every half period
    loss a--b 10% [burst=200ms]         random loss, or bursts of total loss averaging that fraction
    delay a--b 50ms [jitter=10ms] | jitter a--b 10ms | reorder a--b 25% [delay=10ms]
    duplicate a--b 5% | corrupt a--b 1% | rate a--b 1mbit
    partition a,b|c,d     every link crossing the cut goes down (one group alone: against all other nodes)
    crash n3              SIGKILL the node's agent; heal starts it again with the same identity
    pause n3              SIGSTOP the agent; heal sends SIGCONT
    restart n3            instant: stop and start the agent again (same identity)
    malformed a->b [count=100]   instant: garbage datagrams to b's peer port from a's link address (raw
                          socket inside a's namespace); b counts them as drops
    clock-skew n3 60s     the agent's wall clock runs 60 s ahead (-60s: behind); heal sets it true again
    route-server-loss n3  the node's route server stops (the node keeps switching); heal starts a fresh one
    forged-announcement n3 [count=1] | replayed-announcement n3 [count=1]   instant: the node sends bad
                          announcements to its route server in its real session; the server counts them

Link parameters go through the agents' `set_link` (egress of the interface). Healing recomputes an
interface's parameters from the topology plus the faults still active on it, so faults stack and heal in
any order. Nothing outside the run's namespaces is touched.

Modules: base (Fault, parsing, the KINDS registry), link, node, byzantine and route_server (the kinds), record (apply, heal,
the run's list of active faults), measure (ping, iperf3, counters), netlink (veth ends up/down), helper and
__main__ (the process behind flap and bursty loss).
"""
from __future__ import annotations

from testbed.faults.base import (KINDS, LINK_FORMS, End, Fault, FaultCheckFailed, FaultError, link_ends, parse_fault,
                                 parse_link)
# importing the kinds fills KINDS, in this order (the order help texts list them in)
from testbed.faults.link import (Corrupt, Delay, Duplicate, Flap, Jitter, LinkDown, LinkEmulation, Loss, Partition,
                                 Rate, Reorder)
from testbed.faults.node import Crash, NodeFault, Pause, Restart
from testbed.faults.byzantine import Malformed
from testbed.faults.route_server import ClockSkew, ForgedAnnouncement, ReplayedAnnouncement, RouteServerLoss
from testbed.faults.measure import iperf, ping_stats
from testbed.faults.record import active_faults, apply_fault, heal

__all__ = ["KINDS", "LINK_FORMS", "End", "Fault", "FaultError", "FaultCheckFailed", "link_ends", "parse_fault",
           "parse_link",
           "LinkEmulation", "Loss", "Delay", "Jitter", "Reorder", "Duplicate", "Corrupt", "Rate", "LinkDown", "Flap",
           "Partition", "NodeFault", "Crash", "Restart", "Pause", "Malformed", "ClockSkew", "RouteServerLoss",
           "ForgedAnnouncement", "ReplayedAnnouncement",
           "apply_fault", "heal", "active_faults", "ping_stats", "iperf"]
