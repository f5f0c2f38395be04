"""The pool's block handler (pkt-reference.md §5.10; PacketCrypt `js/BlkHandler.js`).

    POST /submit  {"coinbase_commit": hex(48), "header_and_proof": hex} (at most work.SHARE_MAX_LENGTH bytes),
                  header x-pc-payto: a share; answers {"result": {"type": "share", "block", ...}, "error", "warn"}

A share is turned into the block it would be, as BlkHandler.js does: its header must build on the current work
(same previous block), the work's header is taken with the share's merkle root and nonce written in, the work's
coinbase gets the share's commitment over its placeholder and must give that merkle root with the work's branch.
Then the PacketCrypt proof is checked with the project's faithful validator against the share target (pktd
checkpcshare); a share that also meets the block target is submitted to the chain node as a block. Each accepted
share goes to the paymaker as a `share` event; a block the chain accepts is logged as `block_found` and the
coinbase's split as `payout` (with the paymaker input count it was computed from) in the run's event log.
Refusals answer 400 naming the reason and are counted: bad_json, too_big, bad_payto, bad_proof, stale_share,
no_template, bad_commitment, bad_merkle_root, duplicate, and the PacketCrypt reasons (BlockReason names).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from ..blocks import BlockHeader
from ..mining import root_from_branch
from ..packetcrypt import block as pc_block
from ..packetcrypt import difficulty
from ..packetcrypt.ann_tree import CoinbaseCommitment, CommitmentError
from ..packetcrypt.announcement import Announcement, AnnValidationError
from ..tx import Transaction
from ..wire import hash_from_hex, hash_hex, sha256d, varint
from .ann_handler import valid_pay_to
from .master import MasterClient, basic_auth
from .work import SHARE_MAX_LENGTH, WorkError, patch_commitment, share_id

log = logging.getLogger(__name__)


class Refused(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class BlkHandler:
    def __init__(self, *, master: MasterClient, chain_url: str, paymaker_url: str, password: str,
                 http: ClientSession, rules, event=None):
        self.master = master
        self.chain_url = chain_url
        self.paymaker_url = paymaker_url
        self.password = password
        self.http = http
        self.rules = rules
        self.event = event or (lambda kind, **details: None)
        self.seen: set[bytes] = set()
        self.counts: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.by_miner: dict[str, Counter] = {}
        self.blocks: list[dict] = []
        self.last_payout: dict | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/submit", self.submit)

    async def submit(self, request):
        try:
            result = await self._submit(request)
        except Refused as e:
            self.refused[e.reason] += 1
            return web.json_response({"result": "", "error": [f"{e.reason}: {e.detail}"], "warn": []}, status=400)
        self.counts["blocks" if result["block"] else "shares"] += 1
        return web.json_response({"result": result, "error": [], "warn": []})

    async def _submit(self, request) -> dict:
        body = await request.content.read(SHARE_MAX_LENGTH + 1)
        if len(body) > SHARE_MAX_LENGTH:
            raise Refused("too_big", f"a share upload is at most {SHARE_MAX_LENGTH} bytes")
        pay_to = request.headers.get("x-pc-payto", "")
        if not valid_pay_to(pay_to):
            raise Refused("bad_payto", f"{pay_to[:70]!r} is not a PKT address")
        try:
            share = json.loads(body)
            commit_raw = bytes.fromhex(share["coinbase_commit"])
            hap = bytes.fromhex(share["header_and_proof"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise Refused("bad_json", f"expected {{coinbase_commit, header_and_proof}} in hex: {e}") from None
        if len(hap) < 81:
            raise Refused("bad_proof", "header_and_proof is shorter than a header and a proof")
        try:
            pcp, used = pc_block.PacketCryptProof.decode(hap[80:])
        except (ValueError, IndexError) as e:
            raise Refused("bad_proof", str(e)) from None
        if used != len(hap) - 80:
            raise Refused("bad_proof", "bytes after the PacketCrypt proof")
        try:
            commitment = CoinbaseCommitment.parse(commit_raw)
        except CommitmentError as e:
            raise Refused("bad_commitment", str(e)) from None
        work = self.master.works.get(self.master.height)
        if work is None:
            raise Refused("stale_share", "no current work")
        if hap[4:36] != work.prev_hash:
            raise Refused("stale_share", f"share builds on {hap[4:36][::-1].hex()}, the work on "
                                         f"{work.prev_hash[::-1].hex()}")
        header80 = work.header[:36] + hap[36:68] + work.header[68:76] + hap[76:80]
        template = await self.master.template(work.height)
        if template is None:
            raise Refused("no_template", f"the master has no template for {work.height}")
        try:
            coinbase = patch_commitment(bytes.fromhex(template["coinbase"]), commit_raw)
        except (WorkError, CommitmentError) as e:
            raise Refused("bad_commitment", str(e)) from None
        if root_from_branch(sha256d(coinbase), work.branch) != header80[36:68]:
            raise Refused("bad_merkle_root", "the header's merkle root is not the work's with this commitment")
        sid = share_id(header80, pcp.nonce2.to_bytes(4, "little"))
        if sid in self.seen:
            raise Refused("duplicate", sid.hex())
        hashes = await self._parent_hashes(pcp, work.height)
        try:
            is_block, _ = await asyncio.to_thread(      # milliseconds of hashing: off the event loop
                pc_block.validate_block_proof, header80, pcp, commitment, work.height, hashes.get,
                rules=self.rules, share_target=work.share_target)
        except pc_block.BlockValidationError as e:
            raise Refused(e.reason.value, str(e)) from None
        except (AnnValidationError, ValueError) as e:
            raise Refused("bad_proof", str(e)) from None
        self.seen.add(sid)
        now = int(time.time() * 1000)
        header = BlockHeader.parse(header80)
        result = {"type": "share", "payTo": pay_to, "block": False, "time": now, "eventId": sid.hex(),
                  "target": work.share_target, "annCount": str(commitment.ann_count),
                  "annMinWork": commitment.ann_least_work_target}
        miner = self.by_miner.setdefault(pay_to, Counter())
        miner["shares"] += 1
        if is_block:
            block_raw = (header80 + hap[80:] + varint(1 + len(template["transactions"])) + coinbase
                         + b"".join(bytes.fromhex(t) for t in template["transactions"]))
            answer = await self._submit_block(block_raw)
            if answer.get("status") == "accepted":
                result.update(block=True, headerHash=header.hash_hex)
                miner["blocks"] += 1
                self._found(header, work.height, template, commitment, pay_to, coinbase)
            else:
                self.refused[f"block_{answer.get('reason') or answer.get('status')}"] += 1
        await self._post_event(result)
        return result

    async def _parent_hashes(self, pcp, height: int) -> dict[int, bytes]:
        heights = sorted({Announcement.parse(a).parent_block_height for a in pcp.anns})
        out = {}
        if not heights or heights[0] >= height or heights[-1] >= height:
            return out
        try:
            async with self.http.get(f"{self.chain_url}/hashes",
                                     params={"from": str(heights[0]), "count": str(heights[-1] - heights[0] + 1)},
                                     timeout=ClientTimeout(total=5)) as r:
                answer = await r.json()
        except (TimeoutError, ClientError, ValueError) as e:
            raise Refused("chain_unreachable", str(e)) from None
        for i, h in enumerate(answer.get("hashes", [])):
            out[answer["from"] + i] = hash_from_hex(h)
        return out

    async def _submit_block(self, raw: bytes) -> dict:
        try:
            async with self.http.post(f"{self.chain_url}/submitblock", json={"block": raw.hex()},
                                      timeout=ClientTimeout(total=20)) as r:
                return await r.json()
        except (TimeoutError, ClientError, ValueError) as e:
            log.warning("submitting a block: %s", e)
            return {"status": "unreachable"}

    def _found(self, header, height, template, commitment, pay_to, coinbase) -> None:
        cb = Transaction.parse(coinbase)
        eff = difficulty.effective_target(header.bits, commitment.ann_least_work_target, commitment.ann_count)
        found = {"height": height, "hash": header.hash_hex, "miner": pay_to, "ann_count": commitment.ann_count,
                 "ann_target": f"0x{commitment.ann_least_work_target:08x}", "bits": f"0x{header.bits:08x}",
                 "effective_target": f"0x{eff:08x}", "time": header.time}
        self.blocks.append(found)
        self.blocks = self.blocks[-50:]
        self.event("block_found", **found)
        payout = {"height": height, "hash": header.hash_hex, "txid": hash_hex(cb.txid),
                  "outputs": template["miner_outputs"], "split": template["whotopay"]["result"],
                  "paymaker_events": template["whotopay"]["events"]}
        self.last_payout = payout
        self.event("payout", **payout)

    async def _post_event(self, ev: dict) -> None:
        try:
            async with self.http.post(f"{self.paymaker_url}/events", data=json.dumps(ev),
                                      headers={"authorization": basic_auth(self.password)},
                                      timeout=ClientTimeout(total=10)) as r:
                await r.read()
        except (TimeoutError, ClientError) as e:
            log.warning("posting a share to the paymaker: %s", e)

    def status(self) -> dict:
        return {"counts": dict(self.counts), "refused": dict(self.refused),
                "by_miner": {k: dict(v) for k, v in self.by_miner.items()}, "blocks": self.blocks[-10:],
                "last_payout": self.last_payout}

