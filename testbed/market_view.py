"""A run's bandwidth market from the host: the data behind `pktlab market ...` (testbed/cli/market.py) and the same
Mesh methods. It asks the nodes' market services (role issuer, node/market/service.py) through their Unix sockets
(`nodes/<node>/market.sock`); the services talk to each other over the mesh.

`offers` is what a buyer finds: on a route-server mesh, the offers the route servers hold (each market tells its
node's agent what it sells, and the node announces it in its route-server link state: OFFER entities,
node/route_server/announcement.py), each with the route servers that listed it (``route_servers``, and ``source``
in words); on a mesh without route servers, each market's own ``/offers`` (``source``: that market's API). The
seller's own view stays its market's ``/offers`` and ``/status``.

`sell` fills a lease's link and guarantee from the topology's declared leases (testbed/topology/leases.py) when the
lease is one of them; `buy` finds the seller's market URL (its fc00 address) and issuer key, and the price of its
offer when none is given.

`audit` is the metering referee (node/market/referee.py) with the testbed's own byte counts: the bytes a lease
carried are what its ends' agents counted coming in on it (both directions); what is owed for it is the fixed
price of each of its tokens that changed hands (term leases have no per-volume part); what was paid is the price
of each swap of those tokens that the seller saw completed. A token that changed hands without a completed swap
shows as underpaid. `issuer_listing` is what each market says of each issuer chain it holds: updates held, and
whether it refuses the issuer (a discredit proof it verified).

`hub-open`, `hub-pay`, `hub-close`, `hubs` drive the HTLC-forwarding channels of node/market/hubs.py: a market
funds a hub channel to another, a payer pays a payee's invoice through a hub market (one with the service
setting ``hub``), the receiver of a channel closes it on chain.

`auction` starts BitTorrent Token mode on a seller's link (node/market/bids.py, auctions.py): its market auctions
priority (leases of the topology on its link) in rounds; `bid` makes a node's market bid in it (opening a payment
channel to the seller first when given a capacity); `rounds` shows a seller's rounds with node names for keys:
bids, winners, clearing price, the optimistic slot, each holder's bill and what each bidder paid.

`open` buys a lease pay-as-you-go (node/market/channels.py): the buyer's market funds a payment channel to the
seller's and opens it; the seller's market grants the lease at both ends of its link itself (its service config
lists those ends' agents, testbed/services.py), meters the bytes the lease carries there, and withdraws it when
the buyer falls behind. `channels` lists every market's channels; `stop` makes a buyer stop paying.

A sale changes the traffic (`grants`): once a token of a declared lease belongs to someone else on its issuer's
chain, both ends of the lease's link (devices the testbed operates, as the seller's Cloud ISP would) hand the lease
to the token's owner until the token's end, with the agents' ``lease_grant`` command. The holder key is the owner's
cjdns key: a market key is the Ed25519 counterpart of the node's cjdns key (node/market/market_node.py), as the
signer of a lease request is (node/leases/requests.py). From then on the route servers prefer the lease for the
owner's traffic, the owner configures it with signed requests, and at the token's end it is the free tier again.
"""
from __future__ import annotations

from node.agent.control_client import AgentClient, AgentError
from node.cjdns.keys import curve25519_from_signing_key, parse_ip6_text, pubkey_text
from node.market.market_node import MARKET_PORT
from node.market.referee import LeaseUsage, audit as referee_audit
from testbed import services
from testbed.topology.leases import declared_leases
from testbed.waiting import wait_until


class MarketViewError(RuntimeError):
    """A market question or order that cannot be answered, saying why."""


def issuers(topo) -> list[str]:
    return topo.nodes_with_role("issuer")


def rpc(run, topo, node: str, path: str, body: dict | None = None) -> dict:
    if node not in topo.nodes:
        raise MarketViewError(f"no node {node!r} in run {run.name}")
    if node not in issuers(topo):
        raise MarketViewError(f"{node} runs no market (give it the role issuer)")
    try:
        status, answer = services.unix_http(run.path("nodes", node, "market.sock"), path, body,
                                            what=f"{node}: market")
    except OSError as e:
        raise MarketViewError(f"the market of {node} does not answer: {e}") from None
    if status != 200:
        raise MarketViewError(f"{node}: {answer.get('error')}: {answer.get('detail', '')}".rstrip(": "))
    return answer


def offers(run, topo, nodes: list[str] | None = None) -> list[dict]:
    """Every offer on sale (or these sellers'), with the seller, where it was found (``source``) and the link's
    emulated quality: from the route servers on a route-server mesh, else from each market (module docstring)."""
    servers = topo.nodes_with_role("route_server") if run.state.get("routing") == "route-server" else []
    if not servers:
        return [dict(o, seller=n, source=f"market API of {n}", link_quality=_link_quality(topo, o["link"]))
                for n in nodes or issuers(topo) for o in rpc(run, topo, n, "/offers")["offers"]]
    name_of = {parse_ip6_text(a): n for n, a in run.state["addresses"].items()}
    found, silent = {}, []
    for rs in servers:
        try:
            listed = AgentClient(run.path("nodes", rs, "agent.sock")).call("rs_offers", timeout=5)["offers"]
        except (OSError, AgentError, ValueError) as e:
            silent.append(f"{rs}: {e}")
            continue
        for o in listed:
            seller = name_of.get(parse_ip6_text(o["node"]), o["node"])
            if nodes and seller not in nodes:
                continue
            offer = found.setdefault((o["issuer"], o["token"]), {
                **{k: o[k] for k in ("token", "lease", "link", "kbps", "start", "end", "price", "issuer")},
                "seller": seller, "route_servers": [], "link_quality": _link_quality(topo, o["link"])})
            offer["route_servers"].append(rs)
    if len(silent) == len(servers):
        raise MarketViewError(f"no route server answers: {'; '.join(silent)}")
    for o in found.values():
        o["source"] = f"route server{'s' if len(o['route_servers']) > 1 else ''} {', '.join(o['route_servers'])}"
    return sorted(found.values(), key=lambda o: (o["seller"], o["token"]))


def _link_quality(topo, link: str) -> dict | None:
    """The link's emulated parameters as configured (a->b), None for a link the topology does not have."""
    ends = link.split("--")
    found = topo.find_link(*ends) if len(ends) == 2 else None
    if found is None:
        return None
    p = found.ab
    return {"rate_bps": p.rate_bps, "delay_s": p.delay_s, "loss": p.loss}


def declared_lease(topo, lease: str):
    return next((d for d in declared_leases(topo) if d.id == lease), None)


def sell(run, topo, node: str, lease: str, price: int, term_s: float, *, link: str | None = None,
         kbps: int | None = None, token: str | None = None) -> dict:
    declared = declared_lease(topo, lease)
    if declared is not None:
        if node in topo.nodes and topo.nodes[node].isp != declared.isp:
            raise MarketViewError(f"lease {lease} is isp {declared.isp}'s: {node} cannot sell it")
        l = topo.links[declared.link_index]
        link = link or f"{l.a}--{l.b}"
        kbps = kbps or max(1, declared.guarantee_bps // 1000)
    if link is None or kbps is None:
        raise MarketViewError(f"lease {lease} is not declared in the topology: give its link and kbps")
    body = {"token": token or f"{node}.{lease}", "lease": lease, "link": link, "kbps": kbps, "term_s": term_s,
            "price": price}
    return rpc(run, topo, node, "/sell", body)["offer"]


def buy(run, topo, buyer: str, seller: str, token: str, price: int | None = None) -> dict:
    """Start buying `token` from `seller`; {"swap": id, ...}."""
    status = rpc(run, topo, seller, "/status")
    offer = next((o for o in status["offers"] if o["token"] == token), None)
    if price is None:
        if offer is None:
            raise MarketViewError(f"{seller} offers no token {token} now (pktlab market offers)")
        price = offer["price"]
    url = market_url(run, seller)
    answer = rpc(run, topo, buyer, "/buy", {"url": url, "issuer": status["key"], "token": token, "price": price})
    return {"swap": answer["swap"], "buyer": buyer, "seller": seller, "token": token, "price": price}


def market_url(run, node: str) -> str:
    return f"http://[{run.state['addresses'][node]}]:{MARKET_PORT}"


def open_channel(run, topo, buyer: str, seller: str, token: str, units: int, unit_bytes: int,
                 unit_price: int | None = None, via: str | None = None) -> dict:
    """Start buying `token` pay-as-you-go (through the hub market `via`, if given): {"channel": id, ...}."""
    body = {"url": market_url(run, seller), "token": token, "units": units, "unit_bytes": unit_bytes}
    if via is not None:
        body["via"] = market_url(run, via)
    if unit_price is not None:
        body["unit_price"] = unit_price
    answer = rpc(run, topo, buyer, "/channels", body)
    return {"channel": answer["channel"], "buyer": buyer, "seller": seller, "token": token}


def channel(run, topo, node: str, channel_id: str) -> dict:
    return rpc(run, topo, node, f"/channels/{channel_id}")


def stop_channel(run, topo, buyer: str, channel_id: str) -> dict:
    return rpc(run, topo, buyer, f"/channels/{channel_id}/stop", {})


def channels(run, topo) -> list[dict]:
    """Every channel of every market of the run (a channel shows once per side), with the node it is at."""
    return [dict(c, node=n) for n in issuers(topo) for c in rpc(run, topo, n, "/channels")["channels"]]


def hub_open(run, topo, sender: str, receiver: str, capacity: int, refund_blocks: int | None = None) -> dict:
    """The sender's market funds a hub channel (node/market/hubs.py) to the receiver's: {"channel": id, ...}."""
    body = {"url": market_url(run, receiver), "capacity": capacity}
    if refund_blocks is not None:
        body["refund_blocks"] = refund_blocks
    answer = rpc(run, topo, sender, "/hub_channels", body)
    return {"channel": answer["channel"], "sender": sender, "receiver": receiver, "capacity": capacity}


def hub_channel(run, topo, node: str, channel_id: str) -> dict:
    return rpc(run, topo, node, f"/hub_channels/{channel_id}")


def hub_pay(run, topo, payer: str, hub: str, payee: str, amount: int, hold: bool = False,
            expiry_blocks: int | None = None) -> dict:
    """The payee's market draws an invoice for `amount`; the payer's pays it through the hub, adding the hub's
    fee: the payment as the payer has it (hash, state pending)."""
    fee = rpc(run, topo, hub, "/hub")["fee"]
    inv = rpc(run, topo, payee, "/invoices", {"amount": amount, "hold": hold})
    body = {"hub": market_url(run, hub), "to": inv["key"], "hash": inv["hash"], "amount": amount + fee}
    if expiry_blocks is not None:
        body["expiry_blocks"] = expiry_blocks
    return rpc(run, topo, payer, "/hub_pay", body)


def hub_payment(run, topo, payer: str, hash_hex: str) -> dict:
    found = next((p for p in rpc(run, topo, payer, "/hub")["payments"] if p["hash"] == hash_hex), None)
    if found is None:
        raise MarketViewError(f"{payer} made no payment {hash_hex[:16]}")
    return found


def hub_channels(run, topo) -> list[dict]:
    """Every hub channel of every market of the run (once per end), with the node it is at."""
    return [dict(c, node=n) for n in issuers(topo) for c in rpc(run, topo, n, "/hub_channels")["channels"]]


def start_auction(run, topo, node: str, name: str, leases: list[str], slots: int, reserve: int, round_s: float,
                  free_every: int | None = None) -> dict:
    body = {"name": name, "leases": leases, "slots": slots, "reserve": reserve, "round_s": round_s}
    if free_every is not None:
        body["free_every"] = free_every
    return rpc(run, topo, node, "/auctions", body)


def bid(run, topo, node: str, seller: str, auction: str, price: int | None = None,
        remaining_bytes: int | None = None, spend_rate: float | None = None, capacity: int | None = None,
        time_scale: float | None = None) -> dict:
    """Make `node`'s market bid in `seller`'s auction: a price (0: interest only) or the auto-bid."""
    body = {"url": market_url(run, seller), "auction": auction}
    for k, v in (("price", price), ("remaining_bytes", remaining_bytes), ("spend_rate", spend_rate),
                 ("capacity", capacity), ("time_scale", time_scale)):
        if v is not None:
            body[k] = v
    return rpc(run, topo, node, "/bids", body)


def market_names(run, topo) -> dict:
    """{market key hex: node} for the run's markets."""
    return {status(run, topo, n)["key"]: n for n in issuers(topo)}


def rounds(run, topo, node: str, auction: str | None = None, last: int | None = None) -> list[dict]:
    """The seller's auctions (or one) with their rounds (the last `last`), bidder keys replaced by node names."""
    names = market_names(run, topo)
    query = f"?last={last}" if last else ""
    found = [rpc(run, topo, node, f"/auctions/{a}{query}")
             for a in ([auction] if auction else [x["name"] for x in rpc(run, topo, node, "/auctions")["auctions"]])]
    return [_named(a, names) for a in found]


def _named(obj, names: dict):
    """``obj`` with every market key (as a dict key or a value) replaced by its node's name."""
    if isinstance(obj, dict):
        return {names.get(k, k): _named(v, names) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_named(v, names) for v in obj]
    return names.get(obj, obj) if isinstance(obj, str) else obj


def swap(run, topo, node: str, swap_id: str) -> dict:
    return rpc(run, topo, node, f"/swaps/{swap_id}")


def wait_swap(run, topo, node: str, swap_id: str, within: float) -> dict:
    """Until the swap ends (completed or refunded) at `node`; its status."""
    def ended():
        s = swap(run, topo, node, swap_id)
        return s if s["outcome"] else None
    return wait_until(ended, within, f"swap {swap_id[:8]} at {node} ended", interval=0.5)


def tokens(run, topo, node: str) -> list[dict]:
    return rpc(run, topo, node, "/tokens")["tokens"]


def status(run, topo, node: str) -> dict:
    return rpc(run, topo, node, "/status")


def issuer_listing(run, topo) -> list[dict]:
    """Per market, every issuer chain it holds: the issuer (its node's name when it is one of the run's markets),
    updates held, and whether that market refuses it (discredited, with the fault its proof showed)."""
    statuses = {n: status(run, topo, n) for n in issuers(topo)}
    names = {st["key"]: n for n, st in statuses.items()}
    return [{"market": n, "issuer": names.get(i["issuer"], i["issuer"][:16]), "key": i["issuer"],
             "updates": i["updates"], "discredited": i["discredited"], "fault": i["fault"]}
            for n, st in statuses.items() for i in st["issuers"]]


def sold_token(run, topo, seller: str, token: str) -> dict:
    """The seller's token as its issuer chain has it, once it belongs to someone else (else MarketViewError)."""
    key = status(run, topo, seller)["key"]
    t = next((t for t in tokens(run, topo, seller) if t["issuer"] == key and t["token"] == token), None)
    if t is None:
        raise MarketViewError(f"{seller} issued no token {token}")
    if t["owner"] == key or t["locked"]:
        raise MarketViewError(f"token {token} is not sold yet (owner: {seller}, locked: {t['locked']})")
    return t


def grants(topo, sold: dict) -> list[tuple[str, dict]]:
    """[(node, lease_grant arguments)] for both ends of the link of a sold token's declared lease."""
    declared = declared_lease(topo, sold.get("lease", ""))
    if declared is None:
        raise MarketViewError(f"token {sold['token']}: its lease {sold.get('lease')!r} is not declared in the "
                              "topology, so no device carries it")
    link = topo.links[declared.link_index]
    holder = pubkey_text(curve25519_from_signing_key(bytes.fromhex(sold["owner"])))
    return [(end, {"lease": declared.id, "holder": holder, "expires_at": sold["end"]}) for end in (link.a, link.b)]


def lease_nodes(topo) -> list[str]:
    """The nodes at an end of a declared lease's link (the ones whose agents count lease bytes)."""
    return sorted({n for d in declared_leases(topo) for n in lease_ends(topo, d.id)})


def lease_ends(topo, lease: str) -> tuple[str, str]:
    """The two nodes of a declared lease's link."""
    declared = declared_lease(topo, lease)
    if declared is None:
        raise MarketViewError(f"no lease {lease!r} is declared in the topology")
    link = topo.links[declared.link_index]
    return link.a, link.b


def audit(run, topo, lease_counts: dict[str, dict]) -> list[dict]:
    """The referee's lines for every declared lease that has a market token. ``lease_counts``: {node: the agent's
    ``leases`` answer} for the nodes with leases."""
    carried = {}
    for answer in lease_counts.values():
        for key, counters in answer.get("ingress", {}).items():
            lease = key.rsplit("/", 1)[1]
            carried[lease] = carried.get(lease, 0) + counters.get("bytes", 0)
    owed, paid = {}, {}
    for seller in issuers(topo):
        st = status(run, topo, seller)
        done = [s["token"] for s in st["swaps"] if s["role"] == "seller" and s["outcome"] == "completed"]
        for t in tokens(run, topo, seller):
            if t["issuer"] != st["key"] or declared_lease(topo, t.get("lease", "")) is None:
                continue
            owed.setdefault(t["lease"], 0)
            paid.setdefault(t["lease"], 0)
            if t["owner"] != st["key"]:
                owed[t["lease"]] += t["price"]
            paid[t["lease"]] += t["price"] * done.count(t["token"])
    usages = [LeaseUsage(lease, carried.get(lease, 0), fixed_price=owed[lease]) for lease in owed]
    return [vars(line) for line in referee_audit(usages, paid)]
