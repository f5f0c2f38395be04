"""`python -m node.market.service CONFIG.json`: a device's market (market_node.py) as a service in the node's network
namespace, started beside the chain services like them (testbed/services.py) and tagged with the run.

Config (JSON)::

  {"role": "issuer" (optional), "node", "address" (the node's fc00::/8 address), "state_dir" (the node's run
   directory), "log_file", "events_file", "chain" (the chain parameters in their config form), "settings": {
      "port" (default MARKET_PORT), "socket" (a Unix socket path, optional), "chain_url" (its chain node's RPC),
      "node_secret" (the node's cjdns private key, hex: its market key), "wallet_secret" (its PKT wallet key, hex),
      "offers" [{"token", "lease", "link", "kbps", "term_s", "price"}, ...] (the leases it sells),
      "agent_socket" (the node agent's control socket, optional: the offers are then announced in the node's
      route-server announcements, offer_announcer.py), "tick_s" (default 0.5), "fee" (atomic units per chain
      transaction, default 10000),
      "swap" {SwapParams fields, optional},
      "refuse_locks" (default false: true injects the fault of an issuer that ignores every lock request),
      "peers" [the other markets' URLs, "http://[fc00 address]:port"] (push gossip: our updates, proofs),
      "double_issue" (default false: true injects the fault of an issuer that gives a second, different update
      at each height to its first peer; see market_node.py),
      "lease_agents" {lease id: [the control sockets of the agents at both ends of its link]} (the devices that
      carry the leases it sells pay-as-you-go, channels.py; default none),
      "channel_refund_blocks" (optional: a channel's refund height this many blocks above the tip when it is
      funded, instead of channel.py's T13 formula over the offer's remaining term),
      "hub" (default false: true makes the market a hub that routes HTLC payments between the hub channels opened
      to it and those it opens, hubs.py), "hub_fee" (atomic units the hub keeps of each payment it routes,
      default 0)}}

It writes ``<state_dir>/issuer.status.json`` every second (what `pktlab market` shows). SIGTERM stops it.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time

from node.chain.keys import Key
from node.chain.runtime import (
    Runtime,
    ServiceConfigError,
    load_config,
    run_until_stopped,
    serve_http,
)

from .chain_client import ChainClient, ChainClientError
from .lease_devices import AgentLeases
from .market_node import MARKET_PORT, MarketError, MarketNode, check_offer
from .offer_announcer import OfferAnnouncer
from .swap import SwapParams

log = logging.getLogger("node.market.service")


def _secret(rt: Runtime, key: str) -> bytes:
    text = rt.setting(key, str, required=True)
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise ServiceConfigError(f"{rt.source}: settings.{key}: expected 32 bytes as hex")
    return value


def _offers(rt: Runtime) -> list:
    out = []
    for i, o in enumerate(rt.setting("offers", list, [])):
        try:
            out.append(check_offer(o))
        except MarketError as e:
            raise ServiceConfigError(f"{rt.source}: settings.offers[{i}]: {e.detail}") from None
    return out


def _peers(rt: Runtime) -> list:
    peers = rt.setting("peers", list, [])
    for i, url in enumerate(peers):
        if not isinstance(url, str) or not url.startswith("http://"):
            raise ServiceConfigError(f"{rt.source}: settings.peers[{i}]: expected a market's http:// URL")
    return peers


def _lease_agents(rt: Runtime) -> dict:
    agents = rt.setting("lease_agents", dict, {})
    for lease, paths in agents.items():
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ServiceConfigError(f"{rt.source}: settings.lease_agents.{lease}: a list of socket paths")
    return agents


async def run_market(rt: Runtime) -> None:
    from aiohttp import web

    from .api import make_app

    try:
        swap_params = SwapParams(**rt.setting("swap", dict, {}))
    except (TypeError, ValueError) as e:
        raise ServiceConfigError(f"{rt.source}: settings.swap: {e}") from None
    chain = ChainClient(rt.setting("chain_url", str, required=True), rt.params)
    port = rt.setting("port", int, MARKET_PORT)
    hub_fee = rt.setting("hub_fee", int, 0)
    if hub_fee < 0:
        raise ServiceConfigError(f"{rt.source}: settings.hub_fee: atomic units >= 0")
    market = MarketNode(rt.node, _secret(rt, "node_secret"), Key(_secret(rt, "wallet_secret")), chain, rt.state_dir,
                        offers=_offers(rt), params=swap_params, fee=rt.setting("fee", int, 10_000),
                        refuse_locks=rt.setting("refuse_locks", bool, False), peers=_peers(rt),
                        double_issue=rt.setting("double_issue", bool, False),
                        lease_devices=AgentLeases(_lease_agents(rt)),
                        refund_blocks=rt.setting("channel_refund_blocks", int),
                        url=f"http://[{rt.address}]:{port}", hub=rt.setting("hub", bool, False), hub_fee=hub_fee)
    agent_socket = rt.setting("agent_socket", str)
    announcer = OfferAnnouncer(agent_socket, market.counters) if agent_socket else None
    tick_s = rt.setting("tick_s", (int, float), 0.5)
    runner = web.AppRunner(make_app(market), access_log=None, shutdown_timeout=2.0)
    ticking: list[asyncio.Task] = []

    async def loop(step, what: str):
        while True:
            try:
                await step()
            except Exception:                       # one failed round, never a dead market
                market.counters[f"{what}_error"] += 1
                log.exception("market %s", what)
            await asyncio.sleep(tick_s)

    async def start():
        while True:                                 # the chain node may come up after us
            try:
                await market.start(time.time())
                break
            except ChainClientError as e:
                log.warning("market start: %s; again in 1 s", e)
                await asyncio.sleep(1.0)
        await serve_http(rt, runner, port)
        ticking.append(asyncio.create_task(loop(market.tick, "tick")))
        ticking.append(asyncio.create_task(loop(market.gossip_round, "gossip")))      # a slow peer never holds a tick
        if announcer is not None:
            ticking.append(asyncio.create_task(loop(lambda: announcer.tick(market.my_offers(), time.time()),
                                                    "announce")))

    async def stop():
        for t in ticking:
            t.cancel()
        await runner.cleanup()
        await market.close()

    await run_until_stopped(rt, start, market.status, stop)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m node.market.service CONFIG.json", file=sys.stderr)
        return 2
    try:
        rt, log_file = load_config(argv[0], roles=("issuer",), default_role="issuer")
        logging.basicConfig(filename=log_file, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(run_market(rt))
    except ServiceConfigError as e:
        print(f"market service: bad config: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
