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
      "refuse_locks" (default false: true injects the fault of an issuer that ignores every lock request)}}

It writes ``<state_dir>/issuer.status.json`` every second (what `pktlab market` shows). SIGTERM stops it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from node.chain.keys import Key
from node.chain.runtime import (
    Runtime,
    ServiceConfigError,
    listening_socket,
    load_config,
    run_until_stopped,
)

from .chain_client import ChainClient, ChainClientError
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


async def run_market(rt: Runtime) -> None:
    from aiohttp import web

    from .api import make_app

    try:
        swap_params = SwapParams(**rt.setting("swap", dict, {}))
    except (TypeError, ValueError) as e:
        raise ServiceConfigError(f"{rt.source}: settings.swap: {e}") from None
    chain = ChainClient(rt.setting("chain_url", str, required=True), rt.params)
    market = MarketNode(rt.node, _secret(rt, "node_secret"), Key(_secret(rt, "wallet_secret")), chain, rt.state_dir,
                        offers=_offers(rt), params=swap_params, fee=rt.setting("fee", int, 10_000),
                        refuse_locks=rt.setting("refuse_locks", bool, False))
    agent_socket = rt.setting("agent_socket", str)
    announcer = OfferAnnouncer(agent_socket, market.counters) if agent_socket else None
    tick_s = rt.setting("tick_s", (int, float), 0.5)
    port = rt.setting("port", int, MARKET_PORT)
    runner = web.AppRunner(make_app(market), access_log=None, shutdown_timeout=2.0)
    ticking: list[asyncio.Task] = []

    async def loop():
        while True:
            try:
                await market.tick()
                if announcer is not None:
                    await announcer.tick(market.my_offers(), time.time())
            except Exception:                       # one failed tick, never a dead market
                market.counters["tick_error"] += 1
                log.exception("market tick")
            await asyncio.sleep(tick_s)

    async def start():
        while True:                                 # the chain node may come up after us
            try:
                await market.start(time.time())
                break
            except ChainClientError as e:
                log.warning("market start: %s; again in 1 s", e)
                await asyncio.sleep(1.0)
        await runner.setup()
        await web.SockSite(runner, listening_socket(rt.address, port)).start()
        unix = rt.setting("socket", str)
        if unix:
            if os.path.exists(unix):
                os.unlink(unix)
            await web.UnixSite(runner, unix).start()
        ticking.append(asyncio.create_task(loop()))

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
