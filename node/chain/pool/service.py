"""A pool node's service: the four parts of a PacketCrypt pool (§5.10), each its own HTTP server on the node's
fc00::/8 address, talking to each other and to the chain node over HTTP like separate machines would:

    master       :8080   node/chain/pool/master.py
    ann handler  :8081   node/chain/pool/ann_handler.py
    blk handler  :8082   node/chain/pool/blk_handler.py
    paymaker     :8083   POST /events (basic auth, newline-separated JSON events), GET /whotopay[?maxtime=ms],
                         GET /stats: node/chain/pool/paymaker.py behind HTTP

Settings: chain_url (its chain node's RPC), ports, ann_target, mine_old_anns, share_divisor, password, and the
paymaker's: default_address, pool_fee_address, pool_fee, block_payout_fraction, pplns_blk_x, pplns_ann_x,
ann_slot_s, history_s. Every event the paymaker takes is also written to the run's event log as a
`paymaker_event` (with its input number), so a payout can be recomputed from the log.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

from aiohttp import ClientSession, web

from ..packetcrypt import difficulty
from ..runtime import Runtime, ServiceConfigError, listening_socket, run_until_stopped
from .ann_handler import AnnHandler, valid_pay_to
from .blk_handler import BlkHandler
from .master import Master, MasterClient, basic_auth
from .paymaker import PayMaker, PayMakerConfig
from .work import DEFAULT_ANN_TARGET, DEFAULT_MINE_OLD_ANNS, DEFAULT_SHARE_DIVISOR

log = logging.getLogger(__name__)
PORTS = {"master": 8080, "ann": 8081, "blk": 8082, "paymaker": 8083}
MAX_EVENTS_BODY = 4 << 20


class PayMakerServer:
    def __init__(self, paymaker: PayMaker, password: str, event=None):
        self.pm = paymaker
        self.auth = basic_auth(password)
        self.event = event or (lambda kind, **details: None)
        self.refused: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/events", self.events)
        app.router.add_get("/whotopay", self.whotopay)
        app.router.add_get("/stats", self.stats)

    def _authorized(self, request) -> bool:
        if request.headers.get("authorization") == self.auth:
            return True
        self.refused["unauthorized"] += 1
        return False

    async def events(self, request):
        if not self._authorized(request):
            return web.Response(status=401, text="401 Unauthorized", headers={"WWW-Authenticate": "Basic"})
        body = await request.content.read(MAX_EVENTS_BODY + 1)
        if len(body) > MAX_EVENTS_BODY:
            self.refused["too_big"] += 1
            return web.json_response({"result": "", "error": ["too big"], "warn": []}, status=413)
        warn = []
        for n, line in enumerate(body.decode("utf-8", "replace").split("\n")):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                problem = "unable to parse as json"
            else:
                problem = self.pm.add(ev)
                if problem is None:
                    self.event("paymaker_event", input=self.pm.accepted, event=ev)
                    continue
            self.warnings[problem.split(" [")[0]] += 1
            warn.append(f"line {n}: {problem}")
        return web.json_response({"result": {"taken": self.pm.accepted}, "error": [], "warn": warn[:20]})

    async def whotopay(self, request):
        if not self._authorized(request):
            return web.Response(status=401, text="401 Unauthorized", headers={"WWW-Authenticate": "Basic"})
        maxtime = float("inf")
        if "maxtime" in request.query:
            try:
                maxtime = float(request.query["maxtime"])
            except ValueError:
                self.refused["bad_maxtime"] += 1
                return web.json_response({"error": ["maxtime must be a number"]}, status=400)
        return web.json_response(self.pm.who_to_pay(maxtime))

    async def stats(self, request):
        return web.json_response(dict(self.pm.stats(), refused=dict(self.refused), warnings=dict(self.warnings)))


async def run_pool(rt: Runtime) -> None:
    chain_url = rt.setting("chain_url", str, required=True)
    ports = dict(PORTS, **rt.setting("ports", dict, {}))
    password = rt.setting("password", str, "pktlab pool")
    base = f"http://[{rt.address}]" if ":" in rt.address else f"http://{rt.address}"
    urls = {name: f"{base}:{port}" for name, port in ports.items()}
    default_address = rt.setting("default_address", str, required=True)
    if not valid_pay_to(default_address):
        raise ServiceConfigError(f"{rt.source}: settings.default_address: not a PKT address")
    cfg = PayMakerConfig(
        default_address=default_address, pool_fee_address=rt.setting("pool_fee_address", str, default_address),
        base_work=difficulty.work_for_compact(rt.params.pow_limit_bits),
        pool_fee=rt.setting("pool_fee", (int, float), 0.2),
        block_payout_fraction=rt.setting("block_payout_fraction", (int, float), 0.5),
        pplns_blk_x=rt.setting("pplns_blk_x", (int, float), 2.0),
        pplns_ann_x=rt.setting("pplns_ann_x", (int, float), 0.125),
        ann_slot_s=rt.setting("ann_slot_s", (int, float), 60.0),
        history_s=rt.setting("history_s", (int, float), 2 * 86400.0))
    paymaker = PayMakerServer(PayMaker(cfg, valid_pay_to), password, rt.event)
    runners: list[web.AppRunner] = []
    tasks: list[asyncio.Task] = []
    parts: dict = {}
    http: ClientSession | None = None

    async def start():
        nonlocal http
        http = ClientSession()
        master = Master(chain_url=chain_url, urls=urls, ann_target=rt.setting("ann_target", int, DEFAULT_ANN_TARGET),
                        mine_old_anns=rt.setting("mine_old_anns", int, DEFAULT_MINE_OLD_ANNS),
                        share_divisor=rt.setting("share_divisor", int, DEFAULT_SHARE_DIVISOR),
                        password=password, http=http)
        follower = MasterClient(urls["master"], http)
        parts.update(
            master=master, paymaker=paymaker,
            ann=AnnHandler(master=follower, paymaker_url=urls["paymaker"], password=password, http=http,
                           rules=rt.params.pc_rules),
            blk=BlkHandler(master=follower, chain_url=chain_url, paymaker_url=urls["paymaker"], password=password,
                           http=http, rules=rt.params.pc_rules, event=rt.event))
        for name in ("paymaker", "master", "ann", "blk"):
            app = web.Application(client_max_size=MAX_EVENTS_BODY)
            parts[name].routes(app)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            await web.SockSite(runner, listening_socket(rt.address, ports[name])).start()
            runners.append(runner)
        tasks.extend(asyncio.create_task(c) for c in (master.run(), follower.run(), parts["ann"].run()))

    async def stop():
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for r in runners:
            await r.cleanup()
        if http is not None:
            await http.close()

    def status():
        if not parts:
            return {}
        return {"urls": urls, "chain_url": chain_url, "master": parts["master"].status(),
                "anns": parts["ann"].status(), "shares": parts["blk"].status(),
                "paymaker": dict(paymaker.pm.stats(), refused=dict(paymaker.refused),
                                 warnings=dict(paymaker.warnings))}

    await run_until_stopped(rt, start, status, stop)
