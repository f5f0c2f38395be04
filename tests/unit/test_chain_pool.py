"""The PacketCrypt pool (node/chain/pool): the work format, share targets, the PayMaker's PPLNS split recomputed
from §5.10's rules, and the HTTP parts refusing bad bodies with a counted reason (real aiohttp servers on the
loopback)."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.chain.keys import Key
from node.chain.packetcrypt import announcement as ann_mod
from node.chain.packetcrypt import difficulty
from node.chain.packetcrypt.ann_tree import COMMIT_PATTERN
from node.chain.params import regtest
from node.chain.pool import work as W
from node.chain.pool.ann_handler import AnnHandler
from node.chain.pool.blk_handler import BlkHandler
from node.chain.pool.master import MasterClient, basic_auth
from node.chain.pool.paymaker import PayMaker, PayMakerConfig
from node.chain.pool.service import PayMakerServer

MINER_A = Key.from_seed("pool test miner a").address
MINER_B = Key.from_seed("pool test miner b").address
MINER_C = Key.from_seed("pool test miner c").address
DEFAULT = Key.from_seed("pool test default").address
FEE = Key.from_seed("pool test fee").address
PARENT_HASH = bytes(range(32))
RULES = regtest().pc_rules


# --- work ---------------------------------------------------------------------------------------------------------

def _work(height: int = 7, prev: bytes = PARENT_HASH) -> W.Work:
    header = (2).to_bytes(4, "little") + prev + bytes(32) + (1700000000).to_bytes(4, "little") \
        + (0x207FFFFF).to_bytes(4, "little") + bytes(4)
    coinbase = b"\x01\x00\x00\x00" + b"\x42" * 20 + COMMIT_PATTERN + b"\x00" * 8
    return W.Work(header, 0x207FFFFF, W.DEFAULT_ANN_TARGET, height, coinbase, [os.urandom(32), os.urandom(32)])


def test_work_round_trips_and_short_or_inconsistent_work_is_refused():
    w = _work()
    back = W.Work.decode(w.encode())
    assert back == w and back.prev_hash == PARENT_HASH and back.bits == 0x207FFFFF
    assert len(w.encode()) == 80 + 32 + 16 + len(w.coinbase) + 64
    with pytest.raises(W.WorkError, match="too short"):
        W.Work.decode(w.encode()[:100])
    with pytest.raises(W.WorkError, match="do not add up"):
        W.Work.decode(w.encode()[:-1])


def test_share_target_has_a_divisor_of_the_block_work():
    bits = 0x1F0FFFFF
    t = W.share_target(bits, 4)
    assert difficulty.work_for_compact(t) == pytest.approx(difficulty.work_for_compact(bits) / 4, rel=1e-3)
    assert W.share_target(0x207FFFFF, 4) == 0x207FFFFF          # never easier than the easiest target
    with pytest.raises(ValueError):
        W.share_target(bits, 0)


def test_commitment_is_patched_over_the_placeholder_only():
    w = _work()
    commit = bytes.fromhex("09f91102") + b"\x11" * 32 + (0x20020000).to_bytes(4, "little") + (9).to_bytes(8, "little")
    patched = W.patch_commitment(w.coinbase, commit)
    assert len(patched) == len(w.coinbase) and commit in patched and COMMIT_PATTERN not in patched
    with pytest.raises(W.WorkError, match="placeholder"):
        W.patch_commitment(patched, commit)


# --- the PayMaker's split ---------------------------------------------------------------------------------------

def _reference_split(cfg: PayMakerConfig, difficulty_: float, shares, ann_slots) -> dict[str, float]:
    """§5.10 written out: share credit = workMultiple(target) / (difficulty * BASE), ann credit = workMultiple(
    annTarget) * accepted / (difficulty * BASE); walk back newest first paying credit / X until each fraction is
    used up, the rest to the default address; then the fee, everything else scaled by (1 - fee)."""
    def wm(t):
        return difficulty.work_for_compact(t) / cfg.base_work
    pay: dict[str, float] = {}
    left = cfg.block_payout_fraction
    for pay_to, target in reversed(shares):
        give = min(wm(target) / (difficulty_ * cfg.base_work) / cfg.pplns_blk_x, left)
        pay[pay_to] = pay.get(pay_to, 0) + give
        left -= give
    pay[cfg.default_address] = pay.get(cfg.default_address, 0) + left
    left = 1 - cfg.block_payout_fraction
    for slot in reversed(ann_slots):
        for pay_to, accepted, target in slot:
            give = min(wm(target) * accepted / (difficulty_ * cfg.base_work) / cfg.pplns_ann_x, left)
            pay[pay_to] = pay.get(pay_to, 0) + give
            left -= give
    pay[cfg.default_address] = pay.get(cfg.default_address, 0) + left
    out = {k: v * (1 - cfg.pool_fee) for k, v in pay.items() if v}
    out[cfg.pool_fee_address] = out.get(cfg.pool_fee_address, 0) + cfg.pool_fee
    return out


def _events(diff: float):
    t0 = 1_000_000
    evs = [{"type": "block", "height": 5, "hash": "ab" * 32, "difficulty": diff, "time": t0, "eventId": "b5"}]
    shares = [(MINER_A, 0x1F7FFFFF), (MINER_B, 0x1F3FFFFF), (MINER_A, 0x1F7FFFFF)]
    for i, (pay_to, target) in enumerate(shares):
        evs.append({"type": "share", "payTo": pay_to, "block": False, "target": target, "time": t0 + 100 + i,
                    "eventId": f"s{i}"})
    # two 60 s slots: A and C in the first, B in the second
    slots = [[(MINER_A, 40, 0x20020000), (MINER_C, 25, 0x20020000)], [(MINER_B, 30, 0x20020000)]]
    for k, slot in enumerate(slots):
        for j, (pay_to, accepted, target) in enumerate(slot):
            evs.append({"type": "anns", "payTo": pay_to, "accepted": accepted, "unsigned": 0, "totalLen": 0,
                        "target": target, "time": t0 + 60_000 * (k + 1) + j, "eventId": f"a{k}{j}"})
    return evs, shares, slots


def test_paymaker_split_follows_pplns_recomputed_from_the_rules():
    cfg = PayMakerConfig(default_address=DEFAULT, pool_fee_address=FEE, base_work=2, ann_slot_s=60)
    pm = PayMaker(cfg)
    evs, shares, slots = _events(diff=1e4)
    for ev in evs:
        assert pm.add(ev) is None
    got = pm.who_to_pay()
    want = _reference_split(cfg, 1e4, shares, slots)
    assert set(got["result"]) == set(want)
    for k, v in want.items():
        assert got["result"][k] == pytest.approx(v, rel=1e-12), k
    assert sum(got["result"].values()) == pytest.approx(1.0)
    assert got["events"] == len(evs)
    # the shares do not fill the block miners' half here: the default address gets the rest, with a warning
    assert any("Ran out of block shares" in w for w in got["warn"])


def test_paymaker_caps_each_half_when_credits_exceed_it():
    cfg = PayMakerConfig(default_address=DEFAULT, pool_fee_address=FEE, base_work=2, ann_slot_s=60)
    pm = PayMaker(cfg)
    evs, shares, slots = _events(diff=1.0)          # tiny difficulty: every credit is huge
    for ev in evs:
        pm.add(ev)
    got = pm.who_to_pay()["result"]
    want = _reference_split(cfg, 1.0, shares, slots)
    assert got == pytest.approx(want)
    # only the newest share and the newest slot's miner are paid: each half is used up at once
    assert got[MINER_A] == pytest.approx(0.5 * 0.8) and got[MINER_B] == pytest.approx(0.5 * 0.8)
    assert DEFAULT not in got and MINER_C not in got


@pytest.mark.parametrize("event, problem", [
    ("not a dict", "not an object"),
    ({"type": "share", "time": 1}, "eventId"),
    ({"type": "share", "eventId": "x", "time": "soon"}, "time"),
    ({"type": "share", "eventId": "x", "time": 5, "payTo": "nobody"}, "invalid payTo"),
    ({"type": "anns", "eventId": "x", "time": 5, "payTo": MINER_A, "accepted": 1}, "unsigned"),
    ({"type": "block", "eventId": "x", "time": 5, "height": True, "difficulty": 1}, "height"),
    ({"type": "nope", "eventId": "x", "time": 5}, "unhandled event type"),
])
def test_paymaker_refuses_bad_events_naming_the_problem(event, problem):
    from node.chain.pool.ann_handler import valid_pay_to
    pm = PayMaker(PayMakerConfig(default_address=DEFAULT), valid_pay_to)
    assert problem in pm.add(event)
    assert pm.accepted == 0
    ok = {"type": "block", "eventId": "b", "time": 5, "height": 1, "difficulty": 1}
    assert pm.add(ok) is None and pm.add(ok) == "duplicate event"


# --- the HTTP parts refuse bad bodies with a counted reason --------------------------------------------------------

def _mine_anns(parent_height: int, n: int) -> list[bytes]:
    tpl = ann_mod.Announcement(version=1, hard_nonce=int.from_bytes(os.urandom(4), "little"),
                               work_bits=W.DEFAULT_ANN_TARGET, parent_block_height=parent_height)
    miner = ann_mod.AnnMiner(tpl, PARENT_HASH)
    miner.prepare()
    out = []
    for found in miner.search():
        out.append(found.pack())
        if len(out) == n:
            return out
    raise AssertionError("the soft nonces ran out")


def _follower(height: int) -> MasterClient:
    mc = MasterClient("http://127.0.0.1:1", http=None)
    mc.works[height] = _work(height)
    mc.config = {"annTarget": W.DEFAULT_ANN_TARGET, "currentHeight": height}
    return mc


async def _with_client(part, fn):
    app = web.Application()
    part.routes(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        return await fn(client)


def test_ann_handler_checks_every_announcement_and_refuses_bad_requests_by_reason():
    height = 8                                        # the work mines block 8 on the block at 7 (PARENT_HASH)
    anns = _mine_anns(height - 1, 3)
    handler = AnnHandler(master=_follower(height), paymaker_url="http://127.0.0.1:1", password="p", http=None,
                         rules=RULES)
    headers = {"x-pc-payto": MINER_A, "x-pc-worknum": str(height)}
    other_parent = ann_mod.Announcement.parse(anns[2])
    wrong_parent = bytearray(anns[2])
    wrong_parent[12:16] = (height - 3).to_bytes(4, "little")          # parent_block_height field
    assert ann_mod.Announcement.parse(bytes(wrong_parent)).parent_block_height == height - 3 != \
        other_parent.parent_block_height
    tampered = bytearray(anns[1])
    tampered[100] ^= 1

    async def go(client):
        out = {}
        r = await client.post("/submit", data=anns[0] + anns[0] + bytes(tampered) + bytes(wrong_parent) + b"x",
                              headers=headers)
        out["mixed"] = (r.status, await r.json())
        for name, body, hdrs in [
            ("payto", anns[0], dict(headers, **{"x-pc-payto": "not an address"})),
            ("worknum", anns[0], dict(headers, **{"x-pc-worknum": "eight"})),
            ("stale", anns[0], dict(headers, **{"x-pc-worknum": str(height - 1)})),
            ("empty", b"", headers),
            ("big", b"\0" * (1024 * 1024 + 1024), headers),
        ]:
            r = await client.post("/submit", data=body, headers=hdrs)
            out[name] = (r.status, await r.json())
        return out

    out = asyncio.run(_with_client(handler, go))
    status, answer = out["mixed"]
    assert status == 200
    res = answer["result"]
    assert (res["accepted"], res["dup"], res["inval"], res["wrong_parent"], res["runt"]) == (1, 1, 1, 1, 1)
    assert handler.pending == [anns[0]]
    for name, reason in [("payto", "bad_payto"), ("worknum", "bad_worknum"), ("stale", "stale_work"),
                         ("empty", "empty"), ("big", "too_big")]:
        status, answer = out[name]
        assert status in (400, 413) and answer["error"][0].startswith(reason), (name, answer)
        assert handler.refused[reason] == 1
    assert handler.counts["accepted"] == 1 and handler.by_miner[MINER_A]["bytes"] == 4 * 1024 + 1


def test_block_handler_refuses_bad_share_bodies_by_reason():
    handler = BlkHandler(master=_follower(8), chain_url="http://127.0.0.1:1", paymaker_url="http://127.0.0.1:1",
                         password="p", http=None, rules=RULES)
    good_commit = (bytes.fromhex("09f91102") + b"\x11" * 32 + (0x20020000).to_bytes(4, "little")
                   + (4).to_bytes(8, "little")).hex()
    cases = [
        ("bad_payto", b"{}", {"x-pc-payto": "x"}),
        ("bad_json", b"{not json", {}),
        ("bad_json", json.dumps({"coinbase_commit": "zz", "header_and_proof": "00"}).encode(), {}),
        ("bad_json", json.dumps([1, 2]).encode(), {}),
        ("bad_proof", json.dumps({"coinbase_commit": good_commit, "header_and_proof": "00" * 40}).encode(), {}),
        ("bad_proof", json.dumps({"coinbase_commit": good_commit, "header_and_proof": "00" * 80 + "ff" * 30}
                                 ).encode(), {}),
        ("too_big", b"{" + b" " * W.SHARE_MAX_LENGTH + b"}", {}),
    ]

    async def go(client):
        out = []
        for reason, body, hdrs in cases:
            r = await client.post("/submit", data=body, headers={"x-pc-payto": MINER_B, **hdrs})
            out.append((reason, r.status, await r.json()))
        return out

    for reason, status, answer in asyncio.run(_with_client(handler, go)):
        assert status == 400 and answer["error"][0].startswith(reason + ":"), (reason, answer)
    assert sum(handler.refused.values()) == len(cases)
    assert handler.refused["bad_json"] == 3 and handler.refused["bad_proof"] == 2
    assert not handler.counts


def test_paymaker_server_needs_its_password_and_counts_bad_lines():
    server = PayMakerServer(PayMaker(PayMakerConfig(default_address=DEFAULT)), "secret")
    auth = {"authorization": basic_auth("secret")}
    logged = []
    server.event = lambda kind, **d: logged.append((kind, d))

    async def go(client):
        r1 = await client.post("/events", data="{}", headers={"authorization": basic_auth("wrong")})
        r2 = await client.post("/events", headers=auth, data="\n".join([
            "not json", json.dumps({"type": "block", "eventId": "b", "time": 5, "height": 1, "difficulty": 2}),
            json.dumps({"type": "share", "eventId": "s", "time": 6})]))
        r3 = await client.get("/whotopay", params={"maxtime": "later"}, headers=auth)
        r4 = await client.get("/whotopay", headers=auth)
        return r1.status, await r2.json(), r3.status, await r4.json()

    s1, a2, s3, a4 = asyncio.run(_with_client(server, go))
    assert s1 == 401 and server.refused["unauthorized"] == 1
    assert a2["result"]["taken"] == 1 and len(a2["warn"]) == 2
    assert server.warnings["unable to parse as json"] == 1 and server.warnings["invalid payTo address"] == 1
    assert s3 == 400 and server.refused["bad_maxtime"] == 1
    assert a4["result"] == {DEFAULT: pytest.approx(1.0)}            # nothing earned yet: all to the default
    assert logged == [("paymaker_event", {"input": 1, "event": {"type": "block", "eventId": "b", "time": 5,
                                                                "height": 1, "difficulty": 2}})]
