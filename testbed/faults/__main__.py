"""`python -m testbed.faults flap|burst --run NAME --seed N LINK A B`: the loop behind flap (A = period,
B = jitter) and bursty loss (A = average loss, B = mean burst length), started by helper.start_helper and stopped
with SIGTERM, after which the link is left as the remaining faults say."""
from __future__ import annotations

import argparse
import contextlib
import random
import signal
import sys

from testbed.faults.base import FaultError, link_ends
from testbed.faults.link import Loss, interface_params, set_link
from testbed.faults.netlink import set_link_state
from testbed.faults.record import active_faults
from testbed.mesh import Mesh
from testbed.topology import parse_fraction, parse_time
from testbed.waiting import wait_until


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.faults")
    p.add_argument("mode", choices=("flap", "burst"))
    p.add_argument("--run", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("link")
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args(argv)
    mesh = Mesh.attach(args.run)
    rng = random.Random(args.seed)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ends, _ = link_ends(mesh, args.link)

    def sleep(seconds):
        wait_until(lambda: stop, max(0.0, seconds), interval=0.05)     # SIGTERM ends it early

    if args.mode == "flap":
        half, jitter = parse_time(args.a) / 2, parse_time(args.b)
        try:
            while not stop:
                set_link_state(mesh, ends, up=False)
                sleep(half + rng.uniform(-jitter, jitter))
                set_link_state(mesh, ends, up=True)
                sleep(half + rng.uniform(-jitter, jitter))
        finally:
            set_link_state(mesh, ends, up=True)
    else:
        fraction, burst = parse_fraction(args.a), parse_time(args.b)
        gap = burst * (1 - fraction) / fraction
        try:
            while not stop:
                sleep(rng.expovariate(1 / gap))
                if stop:
                    break
                for e in ends:
                    set_link(mesh, e.node, e.ifname, {"loss": 1.0})
                sleep(rng.expovariate(1 / burst))
                others = [f for f in active_faults(mesh) if not (isinstance(f, Loss) and f.burst)]
                for e in ends:
                    set_link(mesh, e.node, e.ifname, {"loss": interface_params(mesh, e, others)["loss"]})
        finally:
            others = [f for f in active_faults(mesh) if not (isinstance(f, Loss) and f.burst)]
            for e in ends:
                with contextlib.suppress(FaultError):
                    set_link(mesh, e.node, e.ifname, {"loss": interface_params(mesh, e, others)["loss"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
