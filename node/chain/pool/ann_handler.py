"""The pool's announcement handler (pkt-reference.md §5.10; `packetcrypt_rs/packetcrypt-annhandler`,
`js/AnnHandler.js`).

    POST /submit              a body of n x 1024-byte announcements, headers x-pc-payto (a PKT address),
                              x-pc-worknum (= the announcements' parent height + 1), x-pc-sver, x-pc-annver;
                              answers {"result": {accepted, dup, inval, badHash, runt, internalErr, ...}, "error",
                              "warn"}
    GET  /anns/index.json     {"highestAnnFile": n}: the newest batch of accepted announcements
    GET  /anns/anns_<n>.bin   batch n (n x 1024 bytes); what block miners download

A request is refused whole (400, counted by reason) when it is not a POST of whole announcements under
MAX_UPLOAD bytes, its payTo is not a PKT address, or its worknum is not one of the TRACKED most recent works.
Each announcement is then checked in this order and counted by the first failure:
    wrong_parent   parent_block_height != worknum - 1
    low_work       work_bits is easier than the pool's annTarget
    bad_version    not version 1 (the config's annVersions)
    signed         a signing key, which only a signing pool accepts (this one does not sign)
    badHash        dedupe key LE64(H32(ann)[0:8]) is 0 or all ones
    dup            that key was seen before (for this work)
    inval          the faithful validation (node/chain/packetcrypt/announcement.validate) against the parent
                   block hash of the master's work, for every announcement (skip_check_chance 0)
Accepted announcements are batched into a new file every FLUSH_S seconds; the counts per payTo go to the paymaker
as `anns` events (target = the pool's annTarget, unsigned 0, totalLen 0) at the same time.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter, OrderedDict

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from ..keys import AddressError, decode_address
from ..packetcrypt import announcement as ann_mod
from ..packetcrypt import difficulty
from ..packetcrypt.hashing import h32
from .master import MasterClient, basic_auth

log = logging.getLogger(__name__)
ANN = ann_mod.ANN_SIZE
MAX_UPLOAD = 1024 * ANN
TRACKED = 6
FLUSH_S = 1.0
KEEP_FILES = 600
_RESULT_KEYS = ("accepted", "dup", "inval", "badHash", "runt", "internalErr", "wrong_parent", "low_work",
                "bad_version", "signed")


def valid_pay_to(text) -> bool:
    try:
        decode_address(text)
    except (AddressError, AttributeError, TypeError):
        return False
    return isinstance(text, str)


class AnnHandler:
    def __init__(self, *, master: MasterClient, paymaker_url: str, password: str, http: ClientSession,
                 rules, events=None):
        self.master = master
        self.paymaker_url = paymaker_url
        self.password = password
        self.http = http
        self.rules = rules
        self.events = events                 # a callable(kind, **details) for the run's event log, or None
        self.files: OrderedDict[int, bytes] = OrderedDict()
        self.highest = 0
        self.pending: list[bytes] = []
        self.credits: dict[str, Counter] = {}
        self.seen: dict[int, set[bytes]] = {}
        self.counts: Counter[str] = Counter()          # per announcement
        self.refused: Counter[str] = Counter()         # whole requests
        self.by_miner: dict[str, Counter] = {}
        self.bytes_in = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/submit", self.submit)
        app.router.add_get("/anns/index.json", self.index)
        app.router.add_get("/anns/anns_{n}.bin", self.file)

    def _refuse(self, reason: str, detail: str, status: int = 400):
        self.refused[reason] += 1
        return web.json_response({"result": "", "error": [f"{reason}: {detail}"], "warn": []}, status=status)

    async def submit(self, request):
        if request.content_length is not None and request.content_length > MAX_UPLOAD:
            return self._refuse("too_big", f"at most {MAX_UPLOAD} bytes", 413)
        body = await request.content.read(MAX_UPLOAD + 1)
        self.bytes_in += len(body)
        if len(body) > MAX_UPLOAD:
            return self._refuse("too_big", f"at most {MAX_UPLOAD} bytes", 413)
        pay_to = request.headers.get("x-pc-payto", "")
        if not valid_pay_to(pay_to):
            return self._refuse("bad_payto", f"{pay_to[:70]!r} is not a PKT address")
        try:
            worknum = int(request.headers.get("x-pc-worknum", ""))
        except ValueError:
            return self._refuse("bad_worknum", "x-pc-worknum must be a whole number")
        current = self.master.height
        work = self.master.works.get(worknum)
        if work is None or not current - TRACKED < worknum <= current:
            return self._refuse("stale_work", f"work {worknum}; tracking {current - TRACKED + 1}..{current}")
        if not body:
            return self._refuse("empty", "no announcements")
        result = Counter({k: 0 for k in _RESULT_KEYS})
        if len(body) % ANN:
            result["runt"] += 1
        seen = self.seen.setdefault(worknum, set())
        candidates = []
        for i in range(len(body) // ANN):
            raw = body[i * ANN:(i + 1) * ANN]
            reason = self._precheck(raw, worknum, seen)
            if reason is None:
                candidates.append(raw)
            else:
                result[reason] += 1
        # the faithful validation takes milliseconds per announcement: off the event loop, so the master's long
        # polls and the other parts keep answering; the dedupe keys were reserved above (no double acceptance)
        for raw, reason in zip(candidates, await asyncio.to_thread(self._validate_all, candidates, work.prev_hash)):
            result[reason] += 1
            if reason == "accepted":
                self.pending.append(raw)
            else:
                seen.discard(h32(raw)[:8])
        for k, v in result.items():
            self.counts[k] += v
        miner = self.by_miner.setdefault(pay_to, Counter())
        miner.update(result)
        miner["bytes"] += len(body)
        credit = self.credits.setdefault(pay_to, Counter())
        for k in ("accepted", "dup", "inval", "badHash", "runt", "internalErr"):
            credit[k] += result[k]
        return web.json_response({"result": dict(result, payTo=pay_to), "error": [], "warn": []})

    def _precheck(self, raw: bytes, worknum: int, seen: set) -> str | None:
        """The cheap checks in order, the dedupe key reserved; None when only the validation is left."""
        try:
            ann = ann_mod.Announcement.parse(raw)
        except ann_mod.AnnValidationError:
            return "inval"
        if ann.parent_block_height != worknum - 1:
            return "wrong_parent"
        if difficulty.compact_to_big(ann.work_bits) > difficulty.compact_to_big(self.master.config["annTarget"]):
            return "low_work"
        if ann.version != 1:
            return "bad_version"
        if ann.has_signing_key:
            return "signed"
        key = h32(raw)[:8]
        if key in (bytes(8), b"\xff" * 8):
            return "badHash"
        if key in seen:
            return "dup"
        seen.add(key)
        return None

    def _validate_all(self, anns: list[bytes], parent_hash: bytes) -> list[str]:
        out = []
        for raw in anns:
            try:
                ann_mod.validate(raw, parent_hash, min_v1_parent_height=self.rules.min_v1_parent_height,
                                 allow_fast=self.rules.allow_fast_anns)
                out.append("accepted")
            except ann_mod.AnnValidationError as e:
                log.info("announcement invalid: %s", e)
                out.append("inval")
            except Exception:
                log.exception("validating an announcement")
                out.append("internalErr")
        return out

    async def index(self, request):
        return web.json_response({"highestAnnFile": self.highest})

    async def file(self, request):
        try:
            n = int(request.match_info["n"])
        except ValueError:
            raise web.HTTPNotFound() from None
        data = self.files.get(n)
        if data is None:
            return web.Response(status=404, text=f"no announcement file {n}")
        return web.Response(body=data, content_type="application/octet-stream")

    async def run(self) -> None:
        """Every FLUSH_S: a new file of the accepted announcements, their credits to the paymaker."""
        while True:
            await asyncio.sleep(FLUSH_S)
            if self.pending:
                self.highest += 1
                self.files[self.highest] = b"".join(self.pending)
                self.pending = []
                while len(self.files) > KEEP_FILES:
                    self.files.popitem(last=False)
            for n in [n for n in self.seen if n <= self.master.height - 16]:
                del self.seen[n]
            if self.credits:
                credits, self.credits = self.credits, {}
                now = int(time.time() * 1000)
                events = [{"type": "anns", "payTo": pay_to, **{k: c[k] for k in
                                                               ("accepted", "dup", "inval", "badHash", "runt",
                                                                "internalErr")},
                           "unsigned": 0, "totalLen": 0, "target": self.master.config["annTarget"],
                           "time": now, "eventId": os.urandom(16).hex()}
                          for pay_to, c in credits.items() if c["accepted"]]
                if events:
                    await self._post(events)

    async def _post(self, events: list[dict]) -> None:
        body = "\n".join(json.dumps(e) for e in events)
        try:
            async with self.http.post(f"{self.paymaker_url}/events", data=body,
                                      headers={"authorization": basic_auth(self.password)},
                                      timeout=ClientTimeout(total=10)) as r:
                await r.read()
        except (TimeoutError, ClientError) as e:
            log.warning("posting announcement credits to the paymaker: %s", e)

    def status(self) -> dict:
        return {"highest_file": self.highest, "counts": dict(self.counts), "refused": dict(self.refused),
                "by_miner": {k: dict(v) for k, v in self.by_miner.items()}, "bytes_in": self.bytes_in}
