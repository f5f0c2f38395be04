"""`pktlab capture`, `dissect`, `report`, `doctor`: looking at what a run did and what the machine offers."""
from __future__ import annotations

import json
import os
import subprocess

from rich.table import Table

from testbed import runs
from testbed.topology import load
from testbed.topology.dataplane import link_crypto
from testbed.cli.common import console, need_root, node_pid, out, run_option


def _interface(run, spec: str) -> tuple[str, str, int]:
    """(node, interface, link number) of NODE:LINK, where LINK is an interface name (n1-eth0) or the node at the
    other end (n1:n2)."""
    node, _, link = spec.partition(":")
    if node not in run.state.get("nodes", {}) or not link:
        raise runs.RunError(f"{spec!r}: expected NODE:INTERFACE or NODE:PEER with a node of run {run.name}")
    for i, rec in enumerate(run.state.get("links", [])):
        for me, other, ifname in ((rec["a"], rec["b"], rec["a_if"]), (rec["b"], rec["a"], rec["b_if"])):
            if me == node and link in (ifname, other):
                return node, ifname, i
    raise runs.RunError(f"{spec!r}: node {node} has no interface or peer {link!r}")


def cmd_capture(args):
    need_root()
    run = runs.pick_run(args.run)
    node, ifname, number = _interface(run, args.where)
    argv = ["tcpdump", "-i", ifname, "--immediate-mode", "-U", "-n", "-w", os.path.abspath(args.output)]
    if args.count:
        argv += ["-c", str(args.count)]
    env = dict(os.environ, **{runs.TAG_VAR: run.id, "PKTLAB_NODE": node})
    console.print(f"capturing on {node}:{ifname} into {args.output} "
                  f"({'for %g s' % args.duration if args.duration else 'until Ctrl-C'})")
    proc = subprocess.Popen(["mnexec", "-a", str(node_pid(run, node))] + argv, env=env,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=args.duration)
    except subprocess.TimeoutExpired:
        pass
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            proc.wait()
    topo = load(str(run.path("topology.yaml")))
    plain = "" if link_crypto(topo, topo.links[number]) else " --plain-links"
    console.print(f"wrote {args.output}; read it with: pktlab dissect {args.output}{plain}")


def cmd_dissect(args):
    from testbed.dissect import print_pcap
    if not os.path.isfile(args.pcap):
        raise runs.RunError(f"{args.pcap}: no such file")
    print_pcap(args.pcap, limit=args.limit, link_crypto=not args.plain_links)


def cmd_report(args):
    from testbed.report import render_report
    run_dir = args.source if args.source and os.path.isdir(args.source) else str(runs.pick_run(args.source).dir)
    out_dir = args.output or os.path.join(run_dir, "report")
    result = render_report(run_dir, out_dir)
    out.print(f"report written to {result['index']}")


def cmd_doctor(args):
    from testbed import doctor
    rep = doctor.report()
    if args.json:
        print(json.dumps(rep, indent=1))
        return
    yes = lambda v: "[green]yes[/]" if v else "[red]no[/]"
    t = Table("check", "result", title="pktlab doctor")
    t.add_row("kernel", rep["kernel"])
    t.add_row("root", yes(rep["root"]))
    t.add_row("/dev/net/tun", yes(rep["tun"]))
    t.add_row("IPv6", yes(rep["ipv6"]))
    for q, ok in rep["qdiscs"].items():
        t.add_row(f"qdisc {q}", yes(ok))
    t.add_row("tcp congestion control", " ".join(rep["congestion_control"]))
    t.add_row("open files (soft/hard)", "/".join(map(str, rep["ulimit_nofile"])))
    t.add_row("processes (soft/hard)", "/".join(map(str, rep["ulimit_nproc"])))
    for tool, path in rep["tools"].items():
        t.add_row(f"tool {tool}", path or "[red]missing[/]")
    out.print(t)
    for line in rep["emulated_in_userspace"]:
        out.print(f"emulated in userspace: {line}")


def register(add) -> None:
    sp = add("capture", cmd_capture, "write a pcap of one link end: pktlab capture NODE:LINK -o file.pcap")
    run_option(sp)
    sp.add_argument("where", metavar="NODE:LINK", help="interface (n1:n1-eth0) or the peer at the other end (n1:n2)")
    sp.add_argument("-o", "--output", required=True)
    sp.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    sp.add_argument("--count", type=int, help="stop after this many packets")

    sp = add("dissect", cmd_dissect, "print a pcap with pktlab's protocols decoded (switch header, CryptoAuth, ...)")
    sp.add_argument("pcap")
    sp.add_argument("--limit", type=int, help="only the first N packets")
    sp.add_argument("--plain-links", action="store_true",
                    help="the peer links carry plaintext switch frames (topology attrs link_crypto: false)")

    sp = add("report", cmd_report, "render PNG plots and an HTML summary of a run (or an archived run directory)")
    sp.add_argument("source", nargs="?", metavar="RUN|DIR", help="run name or archive directory (default: the "
                                                                 "only run)")
    sp.add_argument("-o", "--output", metavar="DIR", help="where to write (default: RUN_DIR/report)")

    sp = add("doctor", cmd_doctor, "what this kernel offers and what pktlab emulates in userspace instead")
    sp.add_argument("--json", action="store_true")
