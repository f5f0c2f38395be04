"""`pktlab chain`, `pktlab mining`, `pktlab wallet NODE [--send TO AMOUNT | --vote-for C --vote-against C]`: the run's PKT chain, pools and miners
(testbed/chain_view.py; the services: testbed/services.py)."""
from __future__ import annotations

import json

from rich.table import Table

from testbed.cli.common import attach, console, out, run_option


def _reasons(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "-"


def cmd_chain(args):
    from testbed.chain_view import chain
    mesh = attach(args)
    data = chain(mesh.run, mesh.topo)
    if args.json:
        print(json.dumps(data, indent=1))
        return
    if data.get("chains"):
        for name, inst in data["chains"].items():
            cfg = inst["config"]
            out.print(f"chain {name}: magic 0x{cfg['net_magic']:08x}, P2P port {cfg['port']}, RPC port "
                      f"{cfg['port'] + 1}, solo miner {inst['miner']}, " + ", ".join(
                          f"{k} {v}" for k, v in cfg.items() if k not in ("genesis_bits", "net_magic", "port")))
            out.print(_nodes_table({n: data["nodes"][n] for n in inst["nodes"]}))
        return
    params = data["params"]
    if params is None:
        raise SystemExit(f"run {mesh.run.name} runs no chain (no node with the role chain)")
    cfg = params["config"]
    out.print("parameters: " + ", ".join(f"{k} {v}" for k, v in cfg.items() if k != "genesis_bits")
              + f", genesis_bits 0x{cfg['genesis_bits']:08x}, ann_rate {params['ann_rate']:g}/s per miner")
    if params.get("measured"):
        m = params["measured"]
        out.print(f"starting difficulty from {m['block_hashes_per_s']} block hashes/s measured (x {m['share_of_cpu']})"
                  f" and {m['anns_per_block']} announcements per block")
    out.print(_nodes_table(data["nodes"]))


def _nodes_table(nodes: dict) -> Table:
    t = Table("chain node", "height", "tip", "bits", "reorgs (deepest)", "peers", "rejected (by reason)")
    for n, st in nodes.items():
        name = n if st["running"] else f"{n} (down)"
        if "height" not in st:
            t.add_row(name, *["-"] * 6)
            continue
        rejected = "; ".join(f"{kind}: {_reasons(c)}" for kind, c in st["rejections"].items() if any(c.values()))
        t.add_row(name, str(st["height"]), st["tip"][:16], st["bits"], f"{st['reorgs']} ({st['deepest_reorg']})",
                  str(len(st["p2p"]["peers"])), rejected or "-")
    return t


def cmd_mining(args):
    from testbed.chain_view import mining
    mesh = attach(args)
    data = mining(mesh.run, mesh.topo)
    if args.json:
        print(json.dumps(data, indent=1))
        return
    t = Table("announcement miner", "running", "found/s", "accepted/s", "accepted", "bytes sent", "lost (stale)",
              "parent")
    for n, m in data["miners"].items():
        t.add_row(n, "yes" if m["running"] else "no", f"{m['found_per_s']:.1f}", f"{m['accepted_per_s']:.1f}",
                  str(m["accepted"]), str(m["bytes_sent"]), str(m["dropped_stale"]), str(m["parent"]))
    out.print(t)
    t = Table("block miner", "running", "hashes/s", "height", "anns in block", "effective target", "shares",
              "blocks")
    for n, b in data["block_miners"].items():
        cur, counts = b["current"], b["counts"]
        t.add_row(n, "yes" if b["running"] else "no", f"{b['hashes_per_s']:.0f}", str(cur.get("height", "-")),
                  str(cur.get("ann_count", "-")), cur.get("effective_target", "-"), str(counts.get("accepted", 0)),
                  str(counts.get("blocks", 0)))
    out.print(t)
    t = Table("pool", "running", "height", "anns accepted", "anns refused", "shares", "blocks", "shares refused",
              "last payout (PKT units by address)")
    for n, p in data["pools"].items():
        payout = p["last_payout"]
        shown = "-" if not payout else f"block {payout['height']}: " + ", ".join(
            f"{a[:10]}… {v}" for a, v in payout["outputs"])
        t.add_row(n, "yes" if p["running"] else "no", str(p["height"]), str(p["anns"].get("accepted", 0)),
                  _reasons({k: v for k, v in p["anns"].items() if k != "accepted"} | p["anns_refused"]),
                  str(p["shares"]), str(p["blocks"]), _reasons(p["shares_refused"]), shown)
    out.print(t)
    t = Table("link", "announcement bytes (miners' uploads along their paths)")
    for link, n in sorted(data["ann_bytes_per_link"].items()):
        t.add_row(link, str(n))
    out.print(t)


def cmd_wallet(args):
    from testbed.chain_view import ChainViewError, send, vote, wallet
    mesh = attach(args)
    voting = bool(args.vote_for or args.vote_against)
    if voting and args.send:
        raise SystemExit("pktlab wallet: --send and --vote-for/--vote-against are separate transactions")
    try:
        if voting:
            result = vote(mesh.run, mesh.topo, args.node, args.vote_for, args.vote_against, args.fee)
        elif args.send:
            to, amount = args.send
            try:
                amount_pkt = float(amount)
            except ValueError:
                raise SystemExit(f"pktlab wallet: --send TO AMOUNT: {amount!r} is not a number of PKT") from None
            result = send(mesh.run, mesh.topo, args.node, to, amount_pkt, args.fee)
        else:
            result = wallet(mesh.run, mesh.topo, args.node)
    except ChainViewError as e:
        raise SystemExit(f"pktlab wallet: {e}") from None
    if args.json:
        print(json.dumps(result, indent=1))
    elif voting:
        console.print(f"{args.node} votes {result['weight'] / (1 << 30):.6f} PKT for {result['for'] or '-'}, "
                      f"against {result['against'] or '-'}: txid {result['txid']} (via {result['chain_node']})")
    elif args.send:
        console.print(f"sent {result['amount_pkt']:g} PKT from {result['from']} to {result['to']}: txid "
                      f"{result['txid']} (via {result['chain_node']})")
    else:
        b = result["balance"]
        units = 1 << 30
        out.print(f"{result['node']}: {result['address']}  (chain node {result['chain_node']}, height "
                  f"{result['height']})")
        out.print(f"  spendable {b['spendable'] / units:.6f} PKT, immature {b['immature'] / units:.6f} PKT, "
                  f"burned {b['burned'] / units:.6f} PKT, {result['coins']} coins")


def register(add) -> None:
    sp = add("chain", cmd_chain, "the run's PKT chain: height, tip, difficulty, reorgs, rejections per chain node")
    run_option(sp)
    sp.add_argument("--json", action="store_true")
    sp = add("mining", cmd_mining, "announcement miners, block miners, pools and payouts of the run")
    run_option(sp)
    sp.add_argument("--json", action="store_true")
    sp = add("wallet", cmd_wallet, "a node's wallet: address and balance; --send TO AMOUNT pays a node or address")
    sp.add_argument("node", metavar="NODE")
    run_option(sp)
    sp.add_argument("--send", nargs=2, metavar=("TO", "AMOUNT"), help="pay AMOUNT PKT to a node of the run or an "
                                                                     "address")
    sp.add_argument("--vote-for", metavar="CANDIDATE", help="vote all spendable coins for a Network Steward "
                                                             "candidate: a node of the run or an address")
    sp.add_argument("--vote-against", metavar="CANDIDATE", help="vote all spendable coins against a candidate; "
                                                                 "'steward' is the current Network Steward")
    sp.add_argument("--fee", type=float, default=0.001, metavar="PKT",
                    help="the fee of a --send or a vote (0.001 PKT)")
    sp.add_argument("--json", action="store_true")
