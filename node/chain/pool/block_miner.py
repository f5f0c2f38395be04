"""A block miner (PacketCrypt `blkmine`, pkt-reference.md §5.5, §5.10): downloads its pool's announcements from the
handlers over the mesh, builds the announcement tree and coinbase commitment, mines PacketCrypt block hashes and
submits shares (and through them blocks) to the block handlers.

Loop: follow config.json and the current work (`GET /work_<h>.bin`); poll every handler's `anns/index.json` and
fetch the new `anns_<n>.bin` batches; every RELOAD_S (or at once on new work) keep the announcements usable at the
work's height (aged target valid, §5.7), choose the classes that give the easiest effective target
(mining.choose_announcements, blkmine.rs reload_classes), build the tree, patch the commitment into the work's
coinbase, compute the merkle root from its branch, and search nonce2 against the effective share target (the
work's shareTarget with these announcements, as pktd checks shares). A solution is POSTed as {"coinbase_commit",
"header_and_proof"} with x-pc-payto; the block handler decides whether it is also a block.

Status (`block_miner.status.json`): hashes/s, the announcement count and effective targets of the current set,
shares submitted, accepted and refused, blocks.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import Counter

from .. import mining
from ..packetcrypt import block as pc_block
from ..packetcrypt import difficulty
from ..packetcrypt.announcement import ANN_SIZE, Announcement, AnnValidationError
from ..packetcrypt.hashing import h32
from ..wire import sha256d
from .http import HttpError, get_bytes, get_json, request
from .work import Work, patch_commitment

log = logging.getLogger(__name__)
RELOAD_S = 2.0
TRIES = 512                  # nonce2 values between looks at new work
MAX_AGE = 260                # an announcement older than this is never usable again (§5.7)


class BlockMinerService:
    def __init__(self, rt):
        self.rt = rt
        self.master = rt.setting("master_url", str, required=True)
        self.pay_to = rt.setting("pay_to", str, required=True)
        self.stop = threading.Event()
        self.config: dict | None = None
        self.work: Work | None = None
        self.anns: dict[bytes, tuple[bytes, int]] = {}       # ann hash -> (ann, parent height)
        self.next_file: dict[str, int] = {}
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.current: dict = {}
        self.hashes = 0
        self.started = time.time()
        self.rate_window: list[tuple[float, int]] = []

    # --- following the pool -----------------------------------------------------------------------------------
    def follow(self) -> None:
        """The current work: config.json, then a long poll for the next work (answered at once on a new block)."""
        while not self.stop.is_set():
            try:
                cfg = get_json(f"{self.master}/config.json", timeout=5)
                self.config = cfg
                h, tip = cfg["currentHeight"], cfg["tipHash"]
                if self.work is None or self.work.height != h or self.work.prev_hash[::-1].hex() != tip:
                    self.work = Work.decode(get_bytes(f"{self.master}/work_{h}.bin", timeout=5))
                status, body, _ = request(f"{self.master}/work_{h + 1}.bin", timeout=40)
                if status == 200:
                    self.work = Work.decode(body)
            except (HttpError, ValueError, KeyError) as e:
                self.errors["pool"] += 1
                log.info("following the pool: %s", e)
                self.stop.wait(0.5)

    def fetch_anns(self) -> None:
        while not self.stop.is_set():
            cfg, work = self.config, self.work
            if cfg is not None and work is not None:
                for url in cfg["downloadAnnUrls"]:
                    try:
                        self._download(url, work.height)
                    except (HttpError, ValueError, KeyError) as e:
                        self.errors["anns"] += 1
                        log.info("announcements from %s: %s", url, e)
            self.stop.wait(0.5)

    def _download(self, url: str, height: int) -> None:
        highest = get_json(f"{url}/anns/index.json", timeout=5)["highestAnnFile"]
        n = self.next_file.get(url, max(highest - 50, 1))
        while n <= highest and not self.stop.is_set():
            try:
                data = get_bytes(f"{url}/anns/anns_{n}.bin", timeout=10)
            except HttpError as e:
                if e.status != 404:
                    raise
                data = b""                    # pruned: go on with the next
            n += 1
            with self.lock:
                for i in range(0, len(data) - ANN_SIZE + 1, ANN_SIZE):
                    raw = data[i:i + ANN_SIZE]
                    try:
                        self.anns[h32(raw)] = (raw, Announcement.parse(raw).parent_block_height)
                    except AnnValidationError:
                        self.errors["bad_ann"] += 1
                self.counts["downloaded_bytes"] += len(data)
                for k in [k for k, (_, p) in self.anns.items() if p < height - MAX_AGE]:
                    del self.anns[k]
        self.next_file[url] = n

    # --- mining -----------------------------------------------------------------------------------------------
    def _build(self, work: Work):
        with self.lock:
            anns = [raw for raw, parent in self.anns.values() if parent < work.height]
        chosen = mining.choose_announcements(anns, work.height, work.bits)
        if not chosen:
            return None
        ann_set = pc_block.BlockAnnSet.build(chosen, work.height)
        commit = ann_set.commitment.pack()
        coinbase = patch_commitment(work.coinbase, commit)
        root = mining.root_from_branch(sha256d(coinbase), work.branch)
        header80 = work.header[:36] + root + work.header[68:76] + os.urandom(4)
        c = ann_set.commitment
        share_target = difficulty.effective_target(work.share_target, c.ann_least_work_target, c.ann_count)
        block_target = difficulty.effective_target(work.bits, c.ann_least_work_target, c.ann_count)
        self.current = {"height": work.height, "ann_count": c.ann_count, "usable": len(anns),
                        "ann_target": f"0x{c.ann_least_work_target:08x}", "bits": f"0x{work.bits:08x}",
                        "effective_target": f"0x{block_target:08x}", "effective_share_target": f"0x{share_target:08x}",
                        "expected_hashes": difficulty.work_for_compact(block_target)}
        return ann_set, commit, header80, share_target

    def mine(self) -> None:
        built, built_at, nonce2 = None, 0.0, 0
        while not self.stop.is_set():
            work = self.work
            if work is None:
                self.stop.wait(0.2)
                continue
            stale = built is None or built[0] is not work
            if stale or time.monotonic() - built_at > RELOAD_S:
                made = self._build(work)
                built_at = time.monotonic()
                if made is None:
                    built = None
                    self.stop.wait(0.5)
                    continue
                built, nonce2 = (work, *made), 0
            _, ann_set, commit, header80, target = built
            sol = pc_block.mine_block(header80, ann_set, target, start_nonce2=nonce2, max_tries=TRIES)
            tried = (sol.nonce2 + 1 - nonce2) if sol else TRIES
            self.hashes += tried
            nonce2 += tried
            if sol is not None:
                self._submit(ann_set, sol, commit, header80)
            if nonce2 >= 1 << 32:
                built = None

    def _submit(self, ann_set, sol, commit: bytes, header80: bytes) -> None:
        proof = pc_block.make_proof(ann_set, sol)
        body = json.dumps({"coinbase_commit": commit.hex(), "header_and_proof": (header80 + proof.encode()).hex()})
        for url in (self.config or {}).get("submitBlockUrls", []):
            try:
                status, answer, _ = request(url, body.encode(), {"x-pc-payto": self.pay_to, "x-pc-sver": "2",
                                                                 "content-type": "application/json"}, timeout=30)
            except HttpError as e:
                self.errors["submit"] += 1
                log.info("share to %s: %s", url, e)
                continue
            self.counts["submitted"] += 1
            try:
                result = json.loads(answer).get("result")
            except ValueError:
                result = None
            if status == 200 and isinstance(result, dict):
                self.counts["accepted"] += 1
                if result.get("block"):
                    self.counts["blocks"] += 1
            else:
                self.counts["refused"] += 1
                log.info("share refused: %s", answer[:300])

    def status(self) -> dict:
        now = time.time()
        self.rate_window = [(t, h) for t, h in self.rate_window if now - t < 10] + [(now, self.hashes)]
        t0, h0 = self.rate_window[0]
        rate = (self.hashes - h0) / (now - t0) if now > t0 else 0.0
        return {"pay_to": self.pay_to, "master": self.master, "hashes": self.hashes, "hashes_per_s": rate,
                "current": self.current, "anns_held": len(self.anns), "counts": dict(self.counts),
                "errors": dict(self.errors), "elapsed_s": round(now - self.started, 1)}


def run_block_miner(rt) -> None:
    os.nice(5)
    svc = BlockMinerService(rt)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: svc.stop.set())
    for f in (svc.follow, svc.fetch_anns, svc.mine):
        threading.Thread(target=f, daemon=True, name=f.__name__).start()
    while not svc.stop.is_set():
        try:
            rt.write_status(svc.status())
        except OSError as e:
            log.warning("status file: %s", e)
        svc.stop.wait(1.0)
