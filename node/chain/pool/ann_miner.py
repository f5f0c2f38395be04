"""An announcement miner (PacketCrypt `annmine`, pkt-reference.md §5.3, §5.10): mines faithful version-1
announcements (8192-item tables, RandHash; the C accelerator where it is built) and uploads them to its pool's
announcement handlers over the mesh.

It reads the master's config.json, mines on the parent `currentHeight - mineOldAnns` (annmine.rs `currently_mining
= top - mine_old`), whose hash is the previous block of that parent's successor's work (`GET /work_<parent+1>.bin`),
at the pool's annTarget. A hard nonce's tables serve its soft nonces (about 256 announcements at work 127); then
the next hard nonce. Found announcements queue for upload; every UPLOAD_S the uploader POSTs the newest
(at most MAX_BATCH, with x-pc-payto, x-pc-worknum = parent + 1) to every handler and drops those whose work the
handlers no longer track (an uplink slower than the miner loses the oldest: bandwidth-hardness).

`max_rate` (announcements/s, 0 = as fast as the CPU goes) caps the mining: a testbed of several miners on a
2-core machine must leave CPU for the data plane and the chain nodes; the bandwidth experiments shape the link
below what the miner produces. The miner runs at nice 10.

Status (`miner.status.json`): announcements found and uploaded per second, uploads, accepted/refused counts from
the handlers, bytes sent, the parent being mined. Every STATS_S a `miner_stats` event (cumulative counts) goes to
the run's event log.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import Counter

from ..packetcrypt import announcement as ann_mod
from ..packetcrypt.randgen import RandHashError
from .http import HttpError, get_bytes, get_json, request
from .work import Work

log = logging.getLogger(__name__)
UPLOAD_S = 0.5
MAX_BATCH = 64
MAX_QUEUE = 4096
TRACKED = 6                  # heights an announcement handler accepts (ann_handler.TRACKED)
CHUNK = 128                  # soft nonces between checks
STATS_S = 5.0


class AnnMinerService:
    def __init__(self, rt):
        self.rt = rt
        self.master = rt.setting("master_url", str, required=True)
        self.pay_to = rt.setting("pay_to", str, required=True)
        self.max_rate = float(rt.setting("max_rate", (int, float), 0))
        self.stop = threading.Event()
        self.config: dict | None = None
        self.queue: dict[int, list[bytes]] = {}          # worknum -> announcements found for it, oldest first
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.results: Counter[str] = Counter()
        self.parent = -1
        self.started = time.time()
        self.errors: Counter[str] = Counter()

    # --- config -----------------------------------------------------------------------------------------------
    def poll_config(self) -> None:
        while not self.stop.is_set():
            try:
                self.config = get_json(f"{self.master}/config.json", timeout=5)
            except HttpError as e:
                self.errors["config"] += 1
                log.info("config.json: %s", e)
            self.stop.wait(1.0)

    def parent_hash(self, parent: int) -> bytes | None:
        try:
            return Work.decode(get_bytes(f"{self.master}/work_{parent + 1}.bin", timeout=5)).prev_hash
        except (HttpError, ValueError) as e:
            self.errors["work"] += 1
            log.info("work %d: %s", parent + 1, e)
            return None

    # --- mining -----------------------------------------------------------------------------------------------
    def mine(self) -> None:
        hard = int.from_bytes(os.urandom(4), "little")
        miner, soft, found_since, since = None, 0, 0, time.monotonic()
        while not self.stop.is_set():
            cfg = self.config
            if cfg is None:
                self.stop.wait(0.2)
                continue
            parent = max(cfg["currentHeight"] - cfg["mineOldAnns"], 0)
            if miner is None or parent != self.parent:
                parent_hash = self.parent_hash(parent)
                if parent_hash is None:
                    self.stop.wait(0.5)
                    continue
                self.parent, miner, soft = parent, None, 0
                template = ann_mod.Announcement(version=1, hard_nonce=hard, work_bits=cfg["annTarget"],
                                                parent_block_height=parent)
                hard = (hard + 1) & 0xFFFFFFFF
                miner = ann_mod.AnnMiner(template, parent_hash)
                try:
                    miner.prepare()
                except RandHashError:
                    miner = None              # this hard nonce's program is unusable: the next one
                    continue
                self.counts["tables"] += 1
            last = ann_mod.soft_nonce_max(miner.template.work_bits)
            if soft > last:
                miner = None                  # soft nonces used up: next hard nonce (same parent)
                self.parent = -1
                continue
            if self.max_rate > 0:             # keep under max_rate announcements per second
                wait = since + found_since / self.max_rate - time.monotonic()
                if wait > 0:
                    self.stop.wait(min(wait, 0.5))
                    continue
                if time.monotonic() - since > 10:
                    found_since, since = 0, time.monotonic()
            for ann in miner.search(soft, soft + CHUNK):
                with self.lock:
                    anns = self.queue.setdefault(parent + 1, [])
                    anns.append(ann.pack())
                    if len(anns) > MAX_QUEUE:
                        del anns[0]
                        self.counts["dropped_full"] += 1
                self.counts["found"] += 1
                found_since += 1
            soft += CHUNK

    # --- uploading --------------------------------------------------------------------------------------------
    def upload(self) -> None:
        while not self.stop.is_set():
            self.stop.wait(UPLOAD_S)
            cfg = self.config
            if cfg is None:
                continue
            with self.lock:             # the handlers no longer take these: lost
                for w in [w for w in self.queue if w <= cfg["currentHeight"] - TRACKED]:
                    self.counts["dropped_stale"] += len(self.queue.pop(w))
                if not self.queue:
                    continue
                batch_work = max(self.queue)                     # the newest first
                anns = self.queue[batch_work]
                batch, anns[:] = anns[-MAX_BATCH:], anns[:-MAX_BATCH]
                if not anns:
                    del self.queue[batch_work]
            body = b"".join(batch)
            headers = {"x-pc-payto": self.pay_to, "x-pc-worknum": str(batch_work), "x-pc-sver": "2",
                       "x-pc-annver": "1", "content-type": "application/octet-stream"}
            for url in cfg["submitAnnUrls"]:
                try:
                    status, answer, sent = request(url, body, headers, timeout=60)
                except HttpError as e:
                    self.errors["upload"] += 1
                    log.info("upload to %s: %s", url, e)
                    continue
                self.counts["uploads"] += 1
                self.counts["uploaded"] += len(batch)
                self.counts["bytes_sent"] += sent
                try:
                    result = json.loads(answer).get("result")
                except ValueError:
                    result = None
                if status == 200 and isinstance(result, dict):
                    self.results.update({k: v for k, v in result.items() if isinstance(v, int)})
                else:
                    self.results[f"refused_{status}"] += 1

    def status(self) -> dict:
        elapsed = max(time.time() - self.started, 1e-9)
        return {"pay_to": self.pay_to, "master": self.master, "parent": self.parent, "max_rate": self.max_rate,
                "counts": dict(self.counts), "results": dict(self.results), "errors": dict(self.errors),
                "found_per_s": self.counts["found"] / elapsed, "uploaded_per_s": self.counts["uploaded"] / elapsed,
                "accepted_per_s": self.results["accepted"] / elapsed,
                "queue": sum(len(a) for a in self.queue.values()),
                "elapsed_s": round(elapsed, 1)}


def run_miner(rt) -> None:
    os.nice(10)
    svc = AnnMinerService(rt)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: svc.stop.set())
    threads = [threading.Thread(target=f, daemon=True, name=f.__name__)
               for f in (svc.poll_config, svc.mine, svc.upload)]
    for t in threads:
        t.start()
    last_stats = 0.0
    while not svc.stop.is_set():
        status = svc.status()
        try:
            rt.write_status(status)
        except OSError as e:
            log.warning("status file: %s", e)
        if time.time() - last_stats >= STATS_S:
            last_stats = time.time()
            rt.event("miner_stats", pay_to=svc.pay_to, found=svc.counts["found"],
                     uploaded=svc.counts["uploaded"], accepted=svc.results["accepted"],
                     bytes_sent=svc.counts["bytes_sent"])
        svc.stop.wait(1.0)
