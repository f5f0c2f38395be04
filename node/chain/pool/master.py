"""The pool master (PacketCrypt `js/Master.js`, pkt-reference.md §5.10), and the client its handlers use.

    GET /config.json          tipHash, currentHeight (the height being mined), the handlers' and paymaker's URLs,
                              annTarget, mineOldAnns, versions (work.config_json)
    GET /work_<n>.bin         the work for height n (work.Work); n = current + 1 is a long poll that answers when
                              that work exists, or after 30 s with 300 and `x-pc-longpoll: try-again`
    GET /bt_<n>.json          the block template behind work n (coinbase, transactions, the payout split it was
                              made with): what a block handler needs to turn a share into a block

The master follows its chain node's tip with the RPC's long poll. For each new tip it asks the paymaker whom to
pay (`GET /whotopay`), asks the chain node for a template whose coinbase splits the miners' part that way (`POST
/template`), and posts a `block` event (height, hash, difficulty) to the paymaker. Works of the last KEEP_WORKS
heights are kept, so announcement miners find the parent hash of the height they mine on (`mineOldAnns` behind).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from .work import Work, WorkError, config_json, share_target

log = logging.getLogger(__name__)
KEEP_WORKS = 64
LONG_POLL_S = 30.0


def basic_auth(password: str) -> str:
    return "Basic " + base64.b64encode(f"x:{password}".encode()).decode()


class Master:
    def __init__(self, *, chain_url: str, urls: dict, ann_target: int, mine_old_anns: int, share_divisor: int,
                 password: str, http: ClientSession):
        self.chain_url = chain_url
        self.urls = urls                    # master, ann, blk, paymaker
        self.ann_target = ann_target
        self.mine_old_anns = mine_old_anns
        self.share_divisor = share_divisor
        self.password = password
        self.http = http
        self.works: dict[int, Work] = {}
        self.templates: dict[int, dict] = {}
        self.tip_hash = ""
        self.height = 0                     # the height being mined
        self.errors = 0
        self._changed = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/config.json", self.config)
        app.router.add_get("/work_{n}.bin", self.work)
        app.router.add_get("/bt_{n}.json", self.block_template)

    # --- serving ----------------------------------------------------------------------------------------------
    def config_json(self) -> dict:
        return config_json(tip_hash=self.tip_hash, height=self.height, master_url=self.urls["master"],
                           ann_urls=[self.urls["ann"]], blk_urls=[self.urls["blk"]],
                           paymaker_url=self.urls["paymaker"], ann_target=self.ann_target,
                           mine_old_anns=self.mine_old_anns)

    async def config(self, request):
        if not self.works:
            return web.Response(status=500, text="Server not ready")
        return web.json_response(self.config_json(), headers={"cache-control": "max-age=8"})

    async def _wait_for(self, n: int) -> bool:
        """Until work n exists, the work changes (a tip at the same height) or LONG_POLL_S pass."""
        if n not in self.works:
            try:
                await asyncio.wait_for(self._changed.wait(), LONG_POLL_S)
            except TimeoutError:
                pass
        return n in self.works

    def _height_arg(self, request) -> int:
        try:
            return int(request.match_info["n"])
        except ValueError:
            raise web.HTTPNotFound(text="not a height") from None

    async def work(self, request):
        n = self._height_arg(request)
        if n == self.height + 1 and not await self._wait_for(n):
            return web.Response(status=300, headers={"x-pc-longpoll": "try-again", "cache-control": "no-store"})
        w = self.works.get(n)
        if w is None:
            return web.Response(status=404, text=f"no work for height {n}")
        return web.Response(body=w.encode(), content_type="application/octet-stream")

    async def block_template(self, request):
        t = self.templates.get(self._height_arg(request))
        if t is None:
            return web.Response(status=404, text="no such block template")
        return web.json_response(t)

    # --- following the chain ------------------------------------------------------------------------------------
    async def run(self) -> None:
        known = "00" * 32
        while True:
            try:
                async with self.http.get(f"{self.chain_url}/tip", params={"wait": known, "timeout": "20"},
                                         timeout=ClientTimeout(total=30)) as r:
                    tip = await r.json()
                if tip["hash"] != known or tip["height"] + 1 not in self.works:
                    await self.new_work(tip)
                    known = tip["hash"]
            except (TimeoutError, ClientError, ValueError, KeyError, WorkError) as e:
                self.errors += 1
                log.warning("master: %s: %s", type(e).__name__, e)
                await asyncio.sleep(1.0)

    async def new_work(self, tip: dict) -> None:
        whotopay = await self._whotopay()
        payouts = [[addr, frac] for addr, frac in whotopay["result"].items() if frac > 0]
        async with self.http.post(f"{self.chain_url}/template", json={"payouts": payouts},
                                  timeout=ClientTimeout(total=10)) as r:
            t = await r.json()
            if r.status != 200:
                raise WorkError(f"template: {t}")
        header = bytes.fromhex(t["header"])
        work = Work(header, share_target(t["bits"], self.share_divisor), self.ann_target, t["height"],
                    bytes.fromhex(t["coinbase"]), [bytes.fromhex(b) for b in t["merklebranch"]])
        t["whotopay"] = {"result": whotopay["result"], "events": whotopay.get("events", 0)}
        t["share_target"] = work.share_target
        self.works[t["height"]] = work
        self.templates[t["height"]] = t
        for h in [h for h in self.works if h <= t["height"] - KEEP_WORKS]:
            del self.works[h]
            self.templates.pop(h, None)
        self.height, self.tip_hash = t["height"], tip["hash"]
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        log.info("work %d on %s, bits 0x%08x", t["height"], tip["hash"], t["bits"])
        event = {"type": "block", "hash": tip["hash"], "height": tip["height"], "difficulty": tip["difficulty"],
                 "time": int(time.time() * 1000), "eventId": tip["hash"][:32]}
        await self._post_events([event])

    async def _whotopay(self) -> dict:
        async with self.http.get(f"{self.urls['paymaker']}/whotopay", headers=self._auth(),
                                 timeout=ClientTimeout(total=10)) as r:
            return await r.json()

    def _auth(self) -> dict:
        return {"authorization": basic_auth(self.password)}

    async def _post_events(self, events: list[dict]) -> None:
        body = "\n".join(json.dumps(e) for e in events)
        async with self.http.post(f"{self.urls['paymaker']}/events", data=body, headers=self._auth(),
                                  timeout=ClientTimeout(total=10)) as r:
            await r.read()

    def status(self) -> dict:
        return {"height": self.height, "tip": self.tip_hash, "works": len(self.works), "errors": self.errors,
                "share_target": f"0x{self.works[self.height].share_target:08x}" if self.height in self.works
                else None}


class MasterClient:
    """What a handler keeps of the master: config.json and the works of the last heights (fetched as they come)."""

    def __init__(self, master_url: str, http: ClientSession, keep: int = KEEP_WORKS):
        self.url = master_url
        self.http = http
        self.keep = keep
        self.config: dict | None = None
        self.works: dict[int, Work] = {}
        self.templates: dict[int, dict] = {}

    @property
    def height(self) -> int:
        """The newest work's height (the long poll may know it before config.json is read again)."""
        return max(self.works, default=-1)

    async def run(self) -> None:
        """Long-poll the next work, so a new block is known here as soon as the master has its work."""
        while True:
            try:
                await self.refresh()
                async with self.http.get(f"{self.url}/work_{self.height + 1}.bin",
                                         timeout=ClientTimeout(total=LONG_POLL_S + 10)) as r:
                    if r.status == 200:
                        self.works[self.height + 1] = Work.decode(await r.read())
                        continue
            except (TimeoutError, ClientError, ValueError, KeyError, WorkError) as e:
                log.warning("following the master: %s: %s", type(e).__name__, e)
            await asyncio.sleep(0.5)

    async def refresh(self) -> None:
        async with self.http.get(f"{self.url}/config.json", timeout=ClientTimeout(total=5)) as r:
            if r.status != 200:
                return
            self.config = await r.json()
        h = self.config["currentHeight"]
        current = self.works.get(h)
        if current is not None and current.prev_hash[::-1].hex() != self.config["tipHash"]:
            del self.works[h]                     # the tip changed at the same height
            self.templates.pop(h, None)
        for n in range(max(h - 8, 0), h + 1):
            if n not in self.works:
                async with self.http.get(f"{self.url}/work_{n}.bin", timeout=ClientTimeout(total=5)) as r:
                    if r.status == 200:
                        self.works[n] = Work.decode(await r.read())
        for n in [n for n in self.works if n <= h - self.keep]:
            del self.works[n]
            self.templates.pop(n, None)

    async def template(self, n: int) -> dict | None:
        if n not in self.templates:
            async with self.http.get(f"{self.url}/bt_{n}.json", timeout=ClientTimeout(total=5)) as r:
                if r.status != 200:
                    return None
                self.templates[n] = await r.json()
        return self.templates[n]
