"""The chain node's HTTP/JSON RPC, for wallets, pools, the CLI and tests (aiohttp). It listens on the node's
fc00::/8 address (port `default_port + 1`, 64765, as pktd's RPC) and on a Unix socket in the node's run directory
(the orchestrator's way in from the host).

    GET  /status                                 what `pktlab chain` shows (height, tip, difficulty, forks,
                                                 reorgs, rejections by reason, peers)
    GET  /params                                 the parameters in force (config form and describe() lines)
    GET  /tip[?wait=HASH&timeout=S]              height, hash, bits, time; with `wait` a long poll that answers
                                                 when the tip is no longer HASH (at most S <= 60 seconds)
    GET  /hashes?from=H&count=N                  main-chain block ids from height H (N <= 2000)
    GET  /block/HASH, GET /block_at/HEIGHT       a block: hash, height, on the main chain or not, raw hex
    POST /template {"payouts": [[ADDRESS, WEIGHT], ...]}   a block template whose coinbase splits the miners' part
                                                 by weight and carries the commitment placeholder (for a pool)
    POST /submitblock {"block": HEX}             process a block: status accepted|orphan|duplicate, or 400
                                                 {"error": "rejected", "reason": REASON, "detail"}
    POST /sendtx {"tx": HEX}                     into the mempool (and relayed): txid, fee; or 400 rejected
    GET  /coins?address=ADDR                     the address's unspent outputs and balance (spendable, immature,
                                                 burned), outputs spent by mempool transactions left out

A request that is not what an endpoint takes gets 400 {"error": CODE, "detail": ...} naming what is wrong
(bad_json, missing_field, bad_field, bad_hex, bad_address, not_found, ...) and is counted by code in the node's
rpc rejections; an unexpected failure is a counted 500 `internal`, never a dead node.
"""
from __future__ import annotations

import json
import logging
import math

from aiohttp import web

from . import mining
from . import script as S
from .consensus import Rejected
from .keys import AddressError, decode_address, encode_address
from .params import run_config
from .wire import hash_from_hex, hash_hex, sha256d

log = logging.getLogger(__name__)
MAX_BODY = 8 << 20
MAX_PAYOUTS = 1000


class RpcError(Exception):
    def __init__(self, code: str, detail: str = "", status: int = 400):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.status = code, detail, status


def make_app(node) -> web.Application:
    @web.middleware
    async def errors(request, handler):
        try:
            return await handler(request)
        except RpcError as e:
            node.rpc_rejections[e.code] += 1
            return web.json_response({"error": e.code, "detail": e.detail}, status=e.status)
        except web.HTTPException as e:
            if e.status >= 400:
                node.rpc_rejections[f"http_{e.status}"] += 1
            raise
        except Exception as e:                  # the edge: one failed request, never a dead node
            node.rpc_rejections["internal"] += 1
            log.exception("rpc %s %s", request.method, request.path)
            return web.json_response({"error": "internal", "detail": f"{type(e).__name__}: {e}"}, status=500)

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    api = Api(node)
    app.router.add_get("/status", api.status)
    app.router.add_get("/params", api.params)
    app.router.add_get("/tip", api.tip)
    app.router.add_get("/hashes", api.hashes)
    app.router.add_get("/block/{hash}", api.block)
    app.router.add_get("/block_at/{height}", api.block_at)
    app.router.add_post("/template", api.template)
    app.router.add_post("/submitblock", api.submitblock)
    app.router.add_post("/sendtx", api.sendtx)
    app.router.add_get("/coins", api.coins)
    return app


async def json_body(request) -> dict:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as e:
        raise RpcError("bad_json", f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise RpcError("bad_json", "the body must be a JSON object")
    return body


def hex_field(body: dict, key: str) -> bytes:
    if key not in body:
        raise RpcError("missing_field", f'needs "{key}"')
    v = body[key]
    if not isinstance(v, str):
        raise RpcError("bad_field", f'"{key}" must be a hex string')
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise RpcError("bad_hex", f'"{key}" is not hex') from None


def int_query(request, key: str, default: int | None, low: int, high: int) -> int:
    text = request.query.get(key)
    if text is None:
        if default is None:
            raise RpcError("missing_field", f"needs ?{key}=")
        return default
    try:
        v = int(text)
    except ValueError:
        raise RpcError("bad_field", f"?{key} must be a whole number") from None
    if not low <= v <= high:
        raise RpcError("bad_field", f"?{key} must be in {low}..{high}")
    return v


def hash_arg(text: str, what: str) -> bytes:
    try:
        return hash_from_hex(text)
    except ValueError:
        raise RpcError("bad_hash", f"{what}: a block id is 64 hex digits") from None


def address_script(text) -> bytes:
    if not isinstance(text, str):
        raise RpcError("bad_address", "an address is a string")
    try:
        return decode_address(text)
    except AddressError as e:
        raise RpcError("bad_address", str(e)) from None


class Api:
    def __init__(self, node):
        self.node = node

    @property
    def chain(self):
        return self.node.chain

    async def status(self, request):
        return web.json_response(self.node.status())

    async def params(self, request):
        p = self.node.params
        return web.json_response({"config": run_config(p), "describe": p.describe().splitlines()})

    def _tip(self) -> dict:
        tip = self.chain.tip
        return {"height": tip.height, "hash": hash_hex(tip.hash), "bits": tip.bits, "time": tip.time,
                "difficulty": self.node.difficulty(tip.bits)}

    async def tip(self, request):
        wait = request.query.get("wait")
        if wait is not None:
            known = hash_arg(wait, "?wait")
            timeout = int_query(request, "timeout", 30, 0, 60)
            await self.node.wait_tip_change(known, timeout)
        return web.json_response(self._tip())

    async def hashes(self, request):
        start = int_query(request, "from", None, 0, 1 << 31)
        count = int_query(request, "count", 1, 1, 2000)
        main = self.chain.main
        return web.json_response({"from": start, "hashes": [hash_hex(h) for h in main[start:start + count]]})

    def _block_answer(self, block_hash: bytes) -> dict:
        raw = self.chain.store.block_raw(block_hash)
        entry = self.chain.index.get(block_hash)
        if raw is None or entry is None:
            raise RpcError("not_found", f"no block {hash_hex(block_hash)}", 404)
        return {"hash": hash_hex(block_hash), "height": entry.height, "main": self.chain.is_main(entry),
                "hex": raw.hex()}

    async def block(self, request):
        return web.json_response(self._block_answer(hash_arg(request.match_info["hash"], "block")))

    async def block_at(self, request):
        try:
            height = int(request.match_info["height"])
        except ValueError:
            raise RpcError("bad_field", "a height is a whole number") from None
        h = self.chain.block_hash_at(height)
        if h is None:
            raise RpcError("not_found", f"no main-chain block at height {height} (tip {self.chain.height})", 404)
        return web.json_response(self._block_answer(h))

    async def template(self, request):
        body = await json_body(request)
        payouts = body.get("payouts")
        if not isinstance(payouts, list) or not payouts or len(payouts) > MAX_PAYOUTS:
            raise RpcError("bad_field", f'"payouts" must be a list of 1..{MAX_PAYOUTS} [address, weight] pairs')
        split = []
        for i, pair in enumerate(payouts):
            if not isinstance(pair, list) or len(pair) != 2:
                raise RpcError("bad_field", f"payouts[{i}] must be [address, weight]")
            weight = pair[1]
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise RpcError("bad_field", f"payouts[{i}]: the weight must be a finite number >= 0")
            split.append((address_script(pair[0]), float(weight)))
        if not any(w > 0 for _, w in split):
            raise RpcError("bad_field", "payouts: at least one weight must be positive")
        t = mining.make_template(self.chain, split[0][0], int(self.node.clock()), payouts=split)
        coinbase = t.coinbase(None)
        header = t.header(coinbase)
        return web.json_response({
            "height": t.height, "prev_hash": hash_hex(t.prev_hash), "bits": t.bits, "time": t.time,
            "header": header.serialize().hex(), "coinbase": coinbase.raw.hex(),
            "merklebranch": [h.hex() for h in mining.coinbase_branch([x.txid for x in t.txs])],
            "transactions": [x.raw.hex() for x in t.txs], "fees": t.fees, "subsidy": t.subsidy,
            "steward_payout": t.steward_payout,
            "miner_outputs": [[_address_or_script(o.script_pubkey), o.value] for o in t.miner_outputs()]})

    async def submitblock(self, request):
        raw = hex_field(await json_body(request), "block")
        r = self.node.process_block(raw, "rpc")
        answer = {"status": r.status, "hash": hash_hex(r.block_hash) if r.block_hash else None}
        if r.ok:
            entry = self.chain.index.get(r.block_hash) if r.block_hash else None
            answer["height"] = entry.height if entry else None
            answer["tip"] = hash_hex(self.chain.tip.hash)
            return web.json_response(answer)
        answer.update(error="rejected", reason=r.reason.value, detail=r.detail)
        return web.json_response(answer, status=400)

    async def sendtx(self, request):
        raw = hex_field(await json_body(request), "tx")
        try:
            fee = self.node.accept_tx(raw, "rpc")
        except Rejected as e:
            return web.json_response({"error": "rejected", "reason": e.reason.value, "detail": e.detail},
                                     status=400)
        return web.json_response({"txid": hash_hex(sha256d(raw)), "fee": fee})

    async def coins(self, request):
        script = address_script(request.query.get("address"))
        chain = self.chain
        height = chain.height + 1
        p = chain.params
        out, sums = [], {"spendable": 0, "immature": 0, "burned": 0}
        for op, c in chain.iter_coins():
            if S.strip_vote(c.script) != script or op in chain.mempool.spenders:
                continue
            if c.coinbase and height - c.height < p.coinbase_maturity:
                state = "immature"
            elif c.steward and height - c.height > p.steward_burn_depth:
                state = "burned"
            else:
                state = "spendable"
            sums[state] += c.value
            out.append({"txid": hash_hex(op.txid), "index": op.index, "value": c.value, "height": c.height,
                        "coinbase": c.coinbase, "steward": c.steward, "state": state, "script": c.script.hex()})
        return web.json_response({"height": chain.height, "coins": out, "balance": sums})


def _address_or_script(script: bytes) -> str:
    try:
        return encode_address(script)
    except AddressError:
        return script.hex()
