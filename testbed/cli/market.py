"""`pktlab market offers|sell|buy|open|stop|tokens|swaps|issuers|audit|channels|hubs|hub-open|hub-pay|hub-close|
auction|bid|rounds`: the run's bandwidth market (testbed/market_view.py; the market services: node/market/service.py
on the nodes with the role issuer)."""
from __future__ import annotations

import json

from rich.table import Table

from testbed.cli.common import attach, out, run_option


def _fail(e) -> SystemExit:
    return SystemExit(f"pktlab market: {e}")


def _positive_int(text: str) -> int:
    import argparse
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def cmd_market(args):
    from testbed.market_view import MarketViewError
    from testbed.waiting import TimedOut
    from testbed.topology.leases import parse_term
    mesh = attach(args)
    try:
        if args.verb == "offers":
            data = mesh.market_offers(measure=not args.no_measure)
        elif args.verb == "sell":
            if len(args.what) != 2:
                raise SystemExit("pktlab market sell NODE LEASE --price UNITS --term DURATION")
            if args.price is None or args.term is None:
                raise SystemExit("pktlab market sell: needs --price UNITS and --term DURATION")
            try:
                term_s = parse_term(args.term)
            except ValueError as e:
                raise SystemExit(f"pktlab market sell: {e}") from None
            data = mesh.market_sell(args.what[0], args.what[1], args.price, term_s, link=args.link, kbps=args.kbps)
        elif args.verb == "buy":
            if len(args.what) != 3:
                raise SystemExit("pktlab market buy BUYER SELLER TOKEN [--price UNITS] [--wait S]")
            if args.wait is not None and not 0 < args.wait < 1e6:
                raise SystemExit("pktlab market buy: --wait: seconds > 0")
            data = mesh.market_buy(*args.what, price=args.price, wait=args.wait)
        elif args.verb == "open":
            if len(args.what) != 3 or args.units is None or args.unit_bytes is None:
                raise SystemExit("pktlab market open BUYER SELLER TOKEN --units N --unit-bytes B [--price UNITS] "
                                 "[--via HUB] [--wait S]")
            if args.wait is not None and not 0 < args.wait < 1e6:
                raise SystemExit("pktlab market open: --wait: seconds > 0")
            data = mesh.market_open(*args.what, args.units, args.unit_bytes, unit_price=args.price, wait=args.wait,
                                    via=args.via)
        elif args.verb == "auction":
            if len(args.what) != 2 or not args.leases or args.slots is None or args.reserve is None \
                    or args.round is None:
                raise SystemExit("pktlab market auction NODE NAME --leases L1,..,OPT --slots N --reserve UNITS "
                                 "--round DURATION [--free-every K]")
            try:
                round_s = parse_term(args.round)
            except ValueError as e:
                raise SystemExit(f"pktlab market auction: {e}") from None
            data = mesh.market_auction(*args.what, args.leases.split(","), args.slots, args.reserve, round_s,
                                       args.free_every)
        elif args.verb == "bid":
            if len(args.what) != 3 or [args.price is not None, args.interest, args.auto is not None].count(True) != 1:
                raise SystemExit("pktlab market bid NODE SELLER AUCTION (--price UNITS | --interest | --auto BYTES "
                                 "[--spend-rate R]) [--capacity UNITS] [--time-scale X]")
            price = 0 if args.interest else args.price
            data = mesh.market_bid(*args.what, price, remaining_bytes=args.auto, spend_rate=args.spend_rate,
                                   capacity=args.capacity, time_scale=args.time_scale)
        elif args.verb == "rounds":
            if len(args.what) not in (1, 2):
                raise SystemExit("pktlab market rounds NODE [AUCTION] [--last N]")
            data = mesh.market_rounds(*args.what, last=args.last)
        elif args.verb == "stop":
            if len(args.what) != 2:
                raise SystemExit("pktlab market stop BUYER CHANNEL")
            data = mesh.market_stop(*args.what)
        elif args.verb == "hub-open":
            if len(args.what) != 2 or args.capacity is None:
                raise SystemExit("pktlab market hub-open SENDER RECEIVER --capacity UNITS [--refund-blocks N] "
                                 "[--wait S]")
            data = mesh.market_hub_open(*args.what, args.capacity, args.refund_blocks, wait=args.wait)
        elif args.verb == "hub-pay":
            if len(args.what) != 3 or args.amount is None:
                raise SystemExit("pktlab market hub-pay PAYER HUB PAYEE --amount UNITS [--hold] [--wait S]")
            data = mesh.market_hub_pay(*args.what, args.amount, hold=args.hold, wait=args.wait)
        elif args.verb == "hub-close":
            if len(args.what) != 2:
                raise SystemExit("pktlab market hub-close RECEIVER CHANNEL")
            data = mesh.market_hub_close(*args.what)
        elif args.verb in ("audit", "channels", "issuers", "hubs"):
            if args.what:
                raise SystemExit(f"pktlab market {args.verb}: takes no arguments")
            data = {"audit": mesh.market_audit, "channels": mesh.market_channels, "hubs": mesh.market_hub_channels,
                    "issuers": mesh.market_issuers}[args.verb]()
        elif args.verb == "tokens":
            if len(args.what) != 1:
                raise SystemExit("pktlab market tokens NODE")
            data = mesh.market_tokens(args.what[0])
        else:
            if len(args.what) != 1:
                raise SystemExit("pktlab market swaps NODE")
            data = mesh.market_status(args.what[0])["swaps"]
    except (MarketViewError, TimedOut) as e:
        raise _fail(e) from None
    if args.json or args.verb in ("sell", "buy", "open", "stop", "hub-open", "hub-pay", "hub-close", "auction", "bid"):
        print(json.dumps(data, indent=1))
        return
    if args.verb == "offers":
        t = Table("seller", "token", "link", "guarantee kbit/s", "term left s", "price (units)", "link rate",
                  "measured RTT ms", "loss", "found at", title="offers")
        import time
        now = time.time()
        for o in data:
            q, m = o.get("link_quality") or {}, o.get("measured") or {}
            t.add_row(o["seller"], o["token"], o["link"], str(o["kbps"]), str(max(0, round(o["end"] - now))),
                      str(o["price"]), str(q.get("rate_bps", "-")), str(m.get("rtt_ms", "-")), str(m.get("loss", "-")),
                      o["source"])
    elif args.verb == "channels":
        t = Table("node", "role", "channel", "token", "state", "capacity", "unit price", "unit bytes", "delivered",
                  "paid units", "paid", "exposure", "via", "reason", title="payment channels")
        for c in data:
            t.add_row(c["node"], c["role"], c["channel"][:16], c["token"], c["state"], str(c["capacity"]),
                      str(c["unit_price"]), str(c["unit_bytes"]), str(c["delivered"]), str(c["paid_units"]),
                      str(c["paid"]), str(c["exposure"]), c.get("via") or "-", c["reason"] or "-")
        try:
            hubs = mesh.market_hub_channels()
        except MarketViewError as e:
            raise _fail(e) from None
        if hubs:                                    # the hub channels below (`hubs` alone, or with --json)
            out.print(t)
            t = _hub_table(hubs)
    elif args.verb == "hubs":
        t = _hub_table(data)
    elif args.verb == "rounds":
        t = Table("auction", "round", "bids (per KiB)", "winners", "price", "optimistic", "ineligible",
                  "KiB carried", "bills", title=f"{args.what[0]}: auction rounds")
        for a in data:
            for r in a["rounds"]:
                opt = f"{r['optimistic']} at {r['optimistic_price']}" if r["optimistic"] else "-"
                t.add_row(a["name"], str(r["round"]), _pairs(r["bids"]), ", ".join(r["winners"]) or "-",
                          str(r["price"]), opt,
                          _pairs(r["ineligible"]),
                          _pairs({k: v // 1024 for k, v in r["carried"].items()}) if r["carried"] is not None else
                          "(running)", _pairs(r["bills"]) if r["bills"] is not None else "-")
        out.print(t)
        t = Table("auction", "bidder", "standing bid", "channel", "billed", "paid", "owed", title="accounts")
        for a in data:
            for b, bid in a["bids"].items():
                acc = a["accounts"].get(b) or {}
                t.add_row(a["name"], b, f"{bid['price']} (from round {bid['round']})", acc.get("channel", "-")[:16],
                          str(acc.get("billed", "-")), str(acc.get("paid", "-")), str(acc.get("owed", "-")))
    elif args.verb == "audit":
        t = Table("lease", "bytes carried", "owed (units)", "paid (units)", "over", "under", "verdict",
                  title="market audit")
        for a in data:
            t.add_row(a["lease"], str(a["bytes_carried"]), str(a["owed"]), str(a["paid"]), str(a["over"]),
                      str(a["under"]), a["verdict"])
    elif args.verb == "issuers":
        t = Table("market", "issuer", "updates held", "status", title="issuers")
        for i in data:
            t.add_row(i["market"], i["issuer"], str(i["updates"]),
                      f"discredited: {i['fault']}" if i["discredited"] else "ok")
    elif args.verb == "tokens":
        t = Table("issuer", "token", "kind", "link", "kbps", "owner", "mine", "locked", title=f"{args.what[0]}: tokens")
        for k in data:
            t.add_row(k["issuer"][:16], k["token"], k["kind"], str(k.get("link", "-")), str(k.get("kbps", "-")),
                      k["owner"][:16], "yes" if k["mine"] else "", "yes" if k["locked"] else "")
    else:
        t = Table("swap", "role", "token", "phase", "outcome", "htlc", title=f"{args.what[0]}: swaps")
        for s in data:
            t.add_row(s["swap"][:16], s["role"], s["token"], s["phase"], str(s["outcome"] or "-"),
                      str(s["outpoint"] or "-"))
    out.print(t)


def _hub_table(rows) -> Table:
    t = Table("node", "role", "hub", "channel", "peer", "state", "capacity", "seq", "paid", "pending",
              "pending amount", title="hub channels (HTLC forwarding; hub: the market routes)")
    for c in rows:
        t.add_row(c["node"], c["role"], "yes" if c["hub"] else "", c["channel"][:16], c["peer"], c["state"],
                  str(c["capacity"]), str(c["seq"]), str(c["paid"]), str(c["pending"]), str(c["pending_amount"]))
    return t


def _pairs(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items()) or "-"


def register(add) -> None:
    sp = add("market", cmd_market, "the bandwidth market: offers (with the link measured over the free tier), sell "
                                   "NODE LEASE, buy BUYER SELLER TOKEN (atomic swap for PKT; a "
                                   "lease of the topology then carries the buyer's traffic), tokens NODE, swaps NODE, "
                                   "issuers (per market: each issuer and whether it is discredited), audit (bytes "
                                   "carried vs paid per lease), open BUYER SELLER TOKEN --units N "
                                   "--unit-bytes B (pay-as-you-go over a payment channel: the seller grants the lease "
                                   "while each unit of B bytes it carries is paid, and withdraws it one unit after "
                                   "the payments stop; --via HUB pays each unit through that hub instead of a channel "
                                   "of its own), stop BUYER CHANNEL (stop paying), channels (every channel: "
                                   "capacity, units delivered, paid, exposure, state); HTLC forwarding through a hub "
                                   "(a market with the service setting hub: true): hub-open SENDER RECEIVER "
                                   "--capacity UNITS (fund a hub channel: payer to hub, or hub to payee), hub-pay "
                                   "PAYER HUB PAYEE --amount UNITS (the payee's invoice, paid by HTLCs forwarded hop "
                                   "by hop; the payer adds the hub's fee), hub-close RECEIVER CHANNEL (close on chain "
                                   "with the latest state), hubs (every hub channel: seq, paid, pending HTLCs); "
                                   "auction NODE NAME --leases "
                                   "L1,OPT --slots N --reserve UNITS --round 10s (BitTorrent Token mode: NODE's "
                                   "market auctions priority on its link every round; the N highest bids get the "
                                   "first N leases and pay max(highest losing bid, reserve) per KiB their lease "
                                   "carried, over a payment channel; the last lease is the optimistic slot, free "
                                   "to a non-bidder every K-th round), bid NODE SELLER AUCTION (--price UNITS | "
                                   "--interest | --auto BYTES) [--capacity UNITS] (bid per KiB, or only say the "
                                   "node wants the link, or auto-bid from the channel's balance and the bytes it "
                                   "still wants to send; --capacity opens the channel that pays the bills), rounds "
                                   "NODE [AUCTION] (a seller's rounds: bids, winners, price, optimistic slot, bills, "
                                   "and what each bidder was billed and paid)")
    sp.add_argument("verb", choices=("offers", "sell", "buy", "open", "stop", "tokens", "swaps", "issuers", "audit",
                                     "channels", "hubs", "hub-open", "hub-pay", "hub-close", "auction", "bid",
                                     "rounds"))
    sp.add_argument("what", nargs="*", metavar="ARG")
    run_option(sp)
    sp.add_argument("--price", type=_positive_int, metavar="UNITS",
                    help="atomic PKT units (2^30 per PKT); open: per unit (default: the seller's least, its term "
                         "price per byte of the guarantee)")
    sp.add_argument("--units", type=_positive_int, help="open: how many units the channel can pay (its capacity)")
    sp.add_argument("--unit-bytes", type=_positive_int, metavar="B",
                    help="open: the metering unit, bytes of the lease's traffic (both directions) paid at a time")
    sp.add_argument("--term", metavar="DURATION", help="sell: how long the lease lasts (600s, 30m, 2h)")
    sp.add_argument("--link", metavar="A--B", help="sell: the lease's link, for a lease the topology does not declare")
    sp.add_argument("--kbps", type=_positive_int, help="sell: the guarantee, for a lease the topology does not declare")
    sp.add_argument("--wait", type=float, metavar="S", help="buy: wait up to S seconds for the swap to end; open: "
                                                           "for the seller to grant the lease; hub-open: for the "
                                                           "receiver to accept; hub-pay: for the payment to end")
    sp.add_argument("--via", metavar="HUB", help="open: pay each unit through this hub market (the buyer needs an "
                                                 "open hub channel to it, and it one to the seller: hub-open)")
    sp.add_argument("--capacity", type=_positive_int, metavar="UNITS",
                    help="hub-open: what the channel can pay; bid: first open a payment channel of UNITS atomic PKT "
                         "to the seller (pays the bills)")
    sp.add_argument("--refund-blocks", type=_positive_int, metavar="N",
                    help="hub-open: the sender may take everything back N blocks from now (default 60)")
    sp.add_argument("--amount", type=_positive_int, metavar="UNITS", help="hub-pay: what the payee gets")
    sp.add_argument("--hold", action="store_true", help="hub-pay: a hold invoice (the payee fulfills it when told)")
    sp.add_argument("--no-measure", action="store_true", help="offers: do not ping the links")
    sp.add_argument("--leases", metavar="L1,..,OPT", help="auction: the leases on the seller's link, one per slot "
                                                          "and the optimistic slot's last")
    sp.add_argument("--slots", type=_positive_int, help="auction: how many bidders win a round")
    sp.add_argument("--reserve", type=int, metavar="UNITS", help="auction: the least bid, atomic units per KiB")
    sp.add_argument("--round", metavar="DURATION", help="auction: how long a round lasts (10s, 1m)")
    sp.add_argument("--free-every", type=_positive_int, metavar="K",
                    help="auction: every K-th round the optimistic slot goes free to a non-bidder (default 3)")
    sp.add_argument("--interest", action="store_true",
                    help="bid: no bid, the node only wants the link (a candidate for the free optimistic slot)")
    sp.add_argument("--auto", type=_positive_int, metavar="BYTES",
                    help="bid: auto-bid spend_rate x balance / (BYTES still to send / 1024), re-bid within the limits")
    sp.add_argument("--spend-rate", type=float, metavar="R", help="bid: with --auto (default 1)")
    sp.add_argument("--time-scale", type=float, metavar="X",
                    help="bid: the re-bid interval is 60 s x X (default 1)")
    sp.add_argument("--last", type=_positive_int, metavar="N", help="rounds: only the last N rounds")
    sp.add_argument("--json", action="store_true")
