"""What a run's PKT chain looks like from the host: the data behind `pktlab chain`, `pktlab mining` and `pktlab
wallet` and the same Mesh methods. It reads the services' status files (written every second) and asks a chain
node's RPC through its Unix socket (testbed/services.py).

Announcement traffic per link is each miner's upload bytes (what its HTTP requests put on the wire) counted on
every link of its fewest-hop path to its pool: the route the data plane takes may differ when links fail.
"""
from __future__ import annotations

from types import SimpleNamespace

import networkx as nx

from node.chain.coins import Coin
from node.chain.keys import AddressError, decode_address
from node.chain.params import for_run
from node.chain.tx import OutPoint
from node.chain.wallet import Wallet, WalletError
from node.chain.wire import hash_from_hex
from testbed import runs, services
from testbed.waiting import wait_until


class ChainViewError(RuntimeError):
    """A question about the run's chain that cannot be answered, saying why."""


def _alive(run, node: str, role: str) -> bool:
    rec = run.state.get("services", {}).get(node, {}).get(role)
    return bool(rec) and runs.alive(rec["pid"], rec["start"])


def chain(run, topo) -> dict:
    """{"params", "nodes": {chain node: status}}; a run of several chain instances has "params" None, every
    instance's nodes (each status naming its "chain") and "chains": {name: {"config", "nodes", "miner"}}."""
    instances = run.state.get("chains")
    members = [n for inst in instances.values() for n in inst["nodes"]] if instances else \
        topo.nodes_with_role("chain")
    nodes = {}
    for n in members:
        st = services.service_status(run, n, "chain") or {}
        nodes[n] = dict(st, running=_alive(run, n, "chain"))
        if instances:
            nodes[n]["chain"] = services.chain_of(run.state, n)
    out = {"params": run.state.get("chain"), "nodes": nodes}
    if instances:
        out["chains"] = instances
    return out


def mining(run, topo) -> dict:
    graph = topo.graph()
    addr_to_node = {a: n for n, a in run.state.get("addresses", {}).items()}
    miners, block_miners, pools, links = {}, {}, {}, {}
    for n in topo.nodes_with_role("miner"):
        st = services.service_status(run, n, "miner") or {}
        counts, results = st.get("counts", {}), st.get("results", {})
        miners[n] = {"running": _alive(run, n, "miner"), "found_per_s": st.get("found_per_s", 0.0),
                     "accepted_per_s": st.get("accepted_per_s", 0.0), "found": counts.get("found", 0),
                     "accepted": results.get("accepted", 0), "bytes_sent": counts.get("bytes_sent", 0),
                     "dropped_stale": counts.get("dropped_stale", 0), "parent": st.get("parent")}
        pool = _node_of_url(st.get("master"), addr_to_node)
        if pool is not None and pool in graph and n in graph:
            path = nx.shortest_path(graph, n, pool)
            for a, b in zip(path, path[1:]):
                name = topo.find_link(a, b).name
                links[name] = links.get(name, 0) + miners[n]["bytes_sent"]
    for n in topo.nodes_with_role("block_miner"):
        st = services.service_status(run, n, "block_miner") or {}
        block_miners[n] = {"running": _alive(run, n, "block_miner"), "hashes_per_s": st.get("hashes_per_s", 0.0),
                           "current": st.get("current", {}), "counts": st.get("counts", {})}
    for n in topo.nodes_with_role("pool"):
        st = services.service_status(run, n, "pool") or {}
        anns, shares = st.get("anns", {}), st.get("shares", {})
        pools[n] = {"running": _alive(run, n, "pool"), "height": st.get("master", {}).get("height"),
                    "anns": anns.get("counts", {}), "anns_refused": anns.get("refused", {}),
                    "shares": shares.get("counts", {}).get("shares", 0),
                    "blocks": shares.get("counts", {}).get("blocks", 0),
                    "shares_refused": shares.get("refused", {}), "last_payout": shares.get("last_payout"),
                    "paymaker": st.get("paymaker", {})}
    return {"miners": miners, "block_miners": block_miners, "pools": pools, "ann_bytes_per_link": links}


def _node_of_url(url: str | None, addr_to_node: dict) -> str | None:
    if not url or "[" not in url:
        return None
    return addr_to_node.get(url.split("[", 1)[1].split("]", 1)[0])


def _chain_node_for(run, topo, node: str) -> str:
    near = services.nearest(topo.graph(), node, topo.nodes_with_role("chain"))
    if near is None:
        raise ChainViewError(f"run {run.name} has no chain node {node} can reach")
    return near


def _rpc(run, node: str, path: str, body=None) -> dict:
    try:
        status, answer = services.chain_rpc(run, node, path, body)
    except OSError as e:
        raise ChainViewError(f"chain node {node} does not answer: {e}") from None
    if status != 200:
        raise ChainViewError(f"chain node {node}: {answer.get('error')}: {answer.get('reason') or ''} "
                             f"{answer.get('detail', '')}".strip())
    return answer


def _wallet(run, node: str) -> Wallet:
    return Wallet(for_run(run.state["chain"]["config"]), [services.wallet_key(run.state["seed"], node)])


def wallet(run, topo, node: str) -> dict:
    if node not in topo.nodes:
        raise ChainViewError(f"no node {node!r} in run {run.name}")
    if "chain" not in run.state:
        raise ChainViewError(f"run {run.name} runs no chain (no node with the role chain)")
    w = _wallet(run, node)
    via = _chain_node_for(run, topo, node)
    answer = _rpc(run, via, f"/coins?address={w.address}")
    return {"node": node, "address": w.address, "chain_node": via, "height": answer["height"],
            "balance": answer["balance"], "coins": len(answer["coins"])}


def coins(run, topo, node: str) -> list[dict]:
    """The node's wallet's unspent coins (txid, index, value, height, ...) as its nearest chain node has them."""
    wallet(run, topo, node)                 # the same checks
    answer = _rpc(run, _chain_node_for(run, topo, node), f"/coins?address={_wallet(run, node).address}")
    return answer["coins"]


def _script_of(run, topo, who: str, what: str) -> bytes:
    """A node of the run (its wallet's P2PKH) or a PKT address, as an output script."""
    if who in topo.nodes:
        return services.wallet_key(run.state["seed"], who).p2pkh_script
    try:
        return decode_address(who)
    except AddressError as e:
        raise ChainViewError(f"{what} {who!r}: neither a node of the run nor a PKT address ({e})") from None


def _coin_view(run, via: str, w: Wallet) -> SimpleNamespace:
    """The wallet's coins as its chain node reports them, in the shape Wallet.send/vote read."""
    answer = _rpc(run, via, f"/coins?address={w.address}")
    coins = [(OutPoint(hash_from_hex(c["txid"]), c["index"]),
              Coin(c["value"], bytes.fromhex(c["script"]), c["height"], c["coinbase"], c["steward"]))
             for c in answer["coins"]]
    return SimpleNamespace(height=answer["height"], iter_coins=lambda: iter(coins),
                           mempool=SimpleNamespace(spenders=set()))      # the RPC leaves mempool-spent coins out


def send(run, topo, node: str, to: str, amount_pkt: float, fee_pkt: float) -> dict:
    """Sign a payment with the node's wallet key over the coins its chain node reports, send it there."""
    if "chain" not in run.state:
        raise ChainViewError(f"run {run.name} runs no chain")
    w = _wallet(run, node)
    to_script = _script_of(run, topo, to, "to")
    via = _chain_node_for(run, topo, node)
    units = w.params.units_per_coin
    try:
        tx = w.send(_coin_view(run, via, w), to_script, round(amount_pkt * units), round(fee_pkt * units))
    except WalletError as e:
        raise ChainViewError(f"{node}: {e}") from None
    sent = _rpc(run, via, "/sendtx", {"tx": tx.raw.hex()})
    to_address = services.wallet_key(run.state["seed"], to).address if to in topo.nodes else to
    return {"from": w.address, "to": to_address, "amount_pkt": amount_pkt, "fee_pkt": fee_pkt, "txid": sent["txid"],
            "chain_node": via}


def vote(run, topo, node: str, vote_for: str | None, vote_against: str | None, fee_pkt: float) -> dict:
    """Move all the node's spendable coins onto one output of its wallet that votes for and/or against a
    candidate (a node of the run, a PKT address, or `steward`: the current Network Steward)."""
    if "chain" not in run.state:
        raise ChainViewError(f"run {run.name} runs no chain")
    if not vote_for and not vote_against:
        raise ChainViewError("a vote needs a candidate to vote for or against")
    w = _wallet(run, node)
    via = _chain_node_for(run, topo, node)

    def candidate(who, what):
        if not who:
            return None
        if who == "steward":
            return bytes.fromhex(_rpc(run, via, "/status")["steward"])
        return _script_of(run, topo, who, what)
    scripts = candidate(vote_for, "vote for"), candidate(vote_against, "vote against")
    try:
        tx = w.vote(_coin_view(run, via, w), vote_for=scripts[0], vote_against=scripts[1],
                    fee=round(fee_pkt * w.params.units_per_coin))
    except WalletError as e:
        raise ChainViewError(f"{node}: {e}") from None
    sent = _rpc(run, via, "/sendtx", {"tx": tx.raw.hex()})
    return {"from": w.address, "for": vote_for, "against": vote_against, "weight": tx.outputs[0].value,
            "txid": sent["txid"], "chain_node": via}


def wait_height(run, topo, height: int, within: float, nodes: list[str] | None = None) -> dict:
    nodes = nodes or topo.nodes_with_role("chain")

    def reached():
        st = chain(run, topo)["nodes"]
        return st if all(st.get(n, {}).get("height", -1) >= height for n in nodes) else None
    return wait_until(reached, within, f"chain nodes {', '.join(nodes)} at height {height}", interval=0.5)
