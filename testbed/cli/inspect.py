"""`pktlab capture`, `dissect`, `report`, `doctor`: looking at what a run did and what the machine offers."""
from __future__ import annotations

import json
import os
import subprocess
import sys


from testbed import runs
from testbed.topology import load
from testbed.topology.dataplane import link_crypto
from testbed.backends import exec_in
from testbed.cli.common import console, need_root, out, run_option
from testbed.console import data_table, styled


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


def address_names(run) -> dict[str, str]:
    """{address: name} of a run: link ends (`n1:n1-eth0`) and fc00::/8 node addresses (`n1`)."""
    names = {addr: node for node, addr in run.state.get("addresses", {}).items()}
    for rec in run.state.get("links", []):
        names[rec["a_addr"]] = f"{rec['a']}:{rec['a_if']}"
        names[rec["b_addr"]] = f"{rec['b']}:{rec['b_if']}"
    return names


def names_file(pcap: str) -> str:
    """Beside a capture: the run's address -> name map, so `dissect` names the nodes after the run is gone."""
    return pcap + ".names.json"


def cmd_capture(args):
    need_root()
    run = runs.pick_run(args.run)
    node, ifname, number = _interface(run, args.where)
    to_stdout = args.output == "-"
    # the pcap comes back on stdout, so it lands here whichever machine the node is on
    argv = ["tcpdump", "-i", ifname, "--immediate-mode", "-U", "-n", "-w", "-"]
    if args.count:
        argv += ["-c", str(args.count)]
    if not to_stdout:
        parent = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(parent):
            raise runs.RunError(f"cannot write {args.output}: no directory {parent}")
        with open(names_file(args.output), "w") as f:
            json.dump(address_names(run), f)
    console.print(f"capturing on {node}:{ifname} into {'stdout' if to_stdout else args.output} "
                  f"({'for %g s' % args.duration if args.duration else 'until Ctrl-C'})")
    pcap = sys.stdout.buffer if to_stdout else open(args.output, "wb")
    try:
        proc = exec_in(run, node, argv, stdout=pcap, stderr=subprocess.DEVNULL)
    finally:
        if not to_stdout:
            pcap.close()        # the command has its own copy
    try:
        proc.wait(timeout=args.duration)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            proc.wait()
    if not to_stdout:
        topo = load(str(run.path("topology.yaml")))
        plain = "" if link_crypto(topo, topo.links[number]) else " --plain-links"
        console.print(f"wrote {args.output}; read it with: pktlab dissect {args.output}{plain}")


def cmd_dissect(args):
    from testbed.dissect import NotACapture, print_pcap
    if args.pcap != "-" and not os.path.isfile(args.pcap):
        raise runs.RunError(f"{args.pcap}: no such file")
    names = None
    if args.pcap != "-" and os.path.isfile(names_file(args.pcap)):
        with open(names_file(args.pcap)) as f:
            names = json.load(f)
    elif args.run or runs.list_runs():
        try:
            names = address_names(runs.pick_run(args.run))
        except runs.RunError:
            if args.run:
                raise
    source = sys.stdin.buffer if args.pcap == "-" else args.pcap
    options = dict(limit=args.limit, relative=not args.absolute, names=names, link_crypto=not args.plain_links)
    try:
        if args.output in (None, "-"):
            print_pcap(source, **options)
            return
        with open(args.output, "w") as f:
            n = print_pcap(source, out=f, **options)
    except NotACapture as e:
        raise runs.RunError(str(e)) from None
    except OSError as e:
        raise runs.RunError(f"cannot write {args.output}: {e.strerror}") from None
    console.print(f"wrote {n} packets to {args.output}")


def cmd_report(args):
    from testbed.report import ReportError, render_report
    if args.dir and args.run:
        raise SystemExit("pktlab report: give --run NAME or an archive DIR, not both")
    if args.dir:
        if not os.path.isdir(args.dir):
            raise runs.RunError(f"{args.dir}: no such directory (an archive from `pktlab down --archive DIR`; "
                                f"for a running run use --run NAME)")
        run_dir, name = args.dir, os.path.basename(os.path.abspath(args.dir))
    else:
        run = runs.pick_run(args.run)
        run_dir, name = str(run.dir), run.name
    out_dir = args.output or str(runs.records_home() / "reports" / name)
    try:
        result = render_report(run_dir, out_dir)
    except ReportError as e:
        raise runs.RunError(str(e)) from None
    out.print(f"report written to {result['index']}")


def cmd_doctor(args):
    from testbed import doctor
    rep = doctor.report()
    if args.json:
        print(json.dumps(rep, indent=1))
        return
    yes = lambda v: styled(("yes", "green")) if v else styled(("no", "red"))  # noqa: E731
    t = data_table("check", "result", title="pktlab doctor")
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
        t.add_row(f"tool {tool}", path or styled(("missing", "red")))
    out.print(t)
    for line in rep["emulated_in_userspace"]:
        out.print(f"emulated in userspace: {line}")


def register(add) -> None:
    sp = add("capture", cmd_capture, "write a pcap of one link end: pktlab capture NODE:LINK -o file.pcap "
                                     "(-o - writes it to stdout: pktlab capture n1:n2 -o - | pktlab dissect -)")
    run_option(sp)
    sp.add_argument("where", metavar="NODE:LINK", help="interface (n1:n1-eth0) or the peer at the other end (n1:n2)")
    sp.add_argument("-o", "--output", required=True, help="pcap file, or - for stdout")
    sp.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    sp.add_argument("--count", type=int, help="stop after this many packets")

    sp = add("dissect", cmd_dissect, "print a pcap with pktlab's protocols decoded (switch header, CryptoAuth, "
                                     "leases' ports, ...), times since the first packet, addresses with node names")
    sp.add_argument("pcap", help="pcap file, or - for stdin")
    sp.add_argument("--limit", type=int, help="only the first N packets")
    sp.add_argument("--absolute", action="store_true", help="times as captured (seconds since 1970)")
    sp.add_argument("-o", "--output", metavar="FILE", help="write the dissection there (default, and -: stdout)")
    sp.add_argument("--plain-links", action="store_true",
                    help="the peer links carry plaintext switch frames (topology attrs link_crypto: false)")
    run_option(sp)

    sp = add("report", cmd_report, "render PNG plots and an HTML summary of a run (or of an archived run "
                                   "directory); written where `down` does not remove it")
    run_option(sp)
    sp.add_argument("dir", nargs="?", metavar="DIR", help="an archived run directory (pktlab down --archive DIR) "
                                                          "instead of a run")
    sp.add_argument("-o", "--output", metavar="DIR", help=f"where to write (default: {runs.records_home()}/"
                                                          "reports/RUN)")

    sp = add("doctor", cmd_doctor, "what this kernel offers and what pktlab emulates in userspace instead")
    sp.add_argument("--json", action="store_true")
