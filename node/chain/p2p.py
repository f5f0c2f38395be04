"""The chain node's peer-to-peer side: TCP connections to the other chain nodes of a run (on their fc00::/8
addresses, so every block and transaction crosses the emulated mesh), the version handshake with the network
magic, headers-first sync, inv/getdata relay and ban scores. Message formats: node/chain/p2p_messages.py.

    p2p = P2P(host, params, listen=("fc12::1", 64764), peers=[("fc34::2", 64764)])
    await p2p.start()            # listens, dials its peers (and redials them), serves until stop()
    p2p.announce_blocks(hashes)  # the host connected new blocks: tell every peer (inv)

`host` is the chain node (node/chain/service.py): `host.chain`, `host.process_block(raw, origin)` and
`host.accept_tx(raw, origin)`; it calls back `announce_blocks`/`announce_tx` to relay what it accepted.

Sync. After the handshake each side sends `getheaders` with its block locator; headers that connect to a known
block or header join a header index (a header is checked for sanity on arrival: positive target within the pow
limit, not more than 720 s ahead); 2000 headers in a reply ask for the next batch. Blocks of indexed headers are
fetched with `getdata` in height order, at most MAX_IN_FLIGHT per peer, and re-asked of another peer after
STALL_S. An `inv` of an unknown block is answered with `getheaders` (headers first); an unknown transaction with
`getdata`. Relaying a block is an `inv` of it to every peer; a peer that connects (or reconnects) gets an `inv` of
the whole mempool after the handshake (what was accepted while it was away would never reach it otherwise).

Silent peers. Every PING_S a peer is pinged; one that has sent nothing at all for SILENT_S since an unanswered ping
is disconnected (counted `silent_peer`) and the dialling side dials again at once. A TCP connection over a mesh link
that was cut and healed can sit in retransmission back-off for minutes (the RTO doubles up to 120 s) while a new
connection would work at once; bitcoind drops such a peer too, after 20 minutes. SILENT_S is far above any pause
of a descheduled process on a busy machine.

Ban scores (pktlab's numbers; btcd's ban threshold is the same 100). A peer accumulates SCORES[reason] for each
bad thing it sends; at BAN_THRESHOLD it is disconnected and its address refused for `ban_s` seconds. A bad magic or
an impossible length end the connection at once (the stream cannot be read on). Every rejection is counted by
reason in `rejections` (shown by `pktlab chain`): a bad frame, a payload that does not decode (by command), a
message before the handshake, an invalid block or transaction (their consensus reasons are counted by the chain).
Blocks rejected for a reason that may not be the sender's fault (a time too far ahead of our clock) cost nothing.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from . import p2p_messages as M
from .blocks import BlockHeader
from .chainstate import ACCEPTED, DUPLICATE, ORPHAN, REJECTED
from .consensus import Reason, Rejected, check_header_sanity
from .store import INVALID
from .wire import DecodeError, sha256d

log = logging.getLogger(__name__)

BAN_THRESHOLD = 100
SCORES = {"bad_magic": 100, "oversized": 100, "bad_command": 20, "bad_checksum": 20, "malformed": 20,
          "before_handshake": 20, "duplicate_version": 20, "bad_header": 50, "invalid_block": 100,
          "invalid_tx": 10}
NOT_THE_SENDERS_FAULT = {Reason.TIME_TOO_NEW}
TX_POLICY = {Reason.ALREADY_KNOWN, Reason.FEE_TOO_LOW, Reason.DOUBLE_SPEND, Reason.MISSING_INPUT,
             Reason.NON_FINAL, Reason.IMMATURE_SPEND, Reason.STEWARD_BURNED}
MAX_IN_FLIGHT = 16
STALL_S = 20.0
MAX_HEADER_INDEX = 200_000
HANDSHAKE_S = 10.0
PING_S = 10.0
SILENT_S = 30.0
MIN_PROTOCOL = 70001


def normal_ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        return host


@dataclass
class Peer:
    id: int
    addr: str
    port: int
    outbound: bool
    writer: asyncio.StreamWriter
    handshake: bool = False
    got_version: bool = False
    version: M.Version | None = None
    score: int = 0
    height: int = 0
    in_flight: dict[bytes, float] = field(default_factory=dict)     # block hash -> when asked
    bytes_in: int = 0
    bytes_out: int = 0
    connected_at: float = 0.0
    ping_nonce: int | None = None
    ping_sent: float = 0.0
    last_recv: float = 0.0
    rtt_ms: float | None = None

    def describe(self) -> dict:
        return {"addr": self.addr, "port": self.port, "outbound": self.outbound, "handshake": self.handshake,
                "height": self.height, "score": self.score, "in_flight": len(self.in_flight),
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "rtt_ms": self.rtt_ms,
                "user_agent": self.version.user_agent if self.version else None}


@dataclass
class HeaderEntry:
    header: BlockHeader
    height: int
    source: int                   # the peer id that sent it


class P2P:
    def __init__(self, host, params, *, listen: tuple[str, int], peers: list[tuple[str, int]],
                 ban_s: float = 3600.0, clock=time.time):
        self.host = host
        self.params = params
        self.magic = params.net_magic
        self.listen = listen
        self.peer_addrs = [(normal_ip(a), p) for a, p in peers]
        self.ban_s = ban_s
        self.clock = clock
        self.nonce = int.from_bytes(os.urandom(8), "little")
        self.peers: dict[int, Peer] = {}
        self.headers: dict[bytes, HeaderEntry] = {}
        self.banned: dict[str, float] = {}
        self.rejections: Counter[str] = Counter()
        self.recent_rejected_txs: set[bytes] = set()
        self._next_id = 0
        self._server = None
        self._tasks: list[asyncio.Task] = []
        self._peer_tasks: set[asyncio.Task] = set()
        self._stopping = False

    # --- life cycle ---------------------------------------------------------------------------------------------
    async def start(self, sock=None) -> None:
        """Listen (on `sock` if given, e.g. a freebind socket made before the address exists) and dial peers."""
        if sock is not None:
            self._server = await asyncio.start_server(self._inbound, sock=sock)
        else:
            self._server = await asyncio.start_server(self._inbound, self.listen[0], self.listen[1])
        me = normal_ip(self.listen[0])
        for addr, port in self.peer_addrs:
            if addr != me and self._should_dial(me, addr):
                self._tasks.append(asyncio.create_task(self._dial_loop(addr, port)))
        self._tasks.append(asyncio.create_task(self._tick_loop()))

    @staticmethod
    def _should_dial(me: str, other: str) -> bool:
        """Of two chain nodes, the one with the lower address dials: one connection per pair."""
        try:
            return ipaddress.ip_address(me) < ipaddress.ip_address(other)
        except ValueError:
            return True

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for p in list(self.peers.values()):
            self._close(p)
        tasks = self._tasks + list(self._peer_tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- connections ----------------------------------------------------------------------------------------------
    def is_banned(self, addr: str) -> bool:
        until = self.banned.get(addr)
        if until is None:
            return False
        if self.clock() >= until:
            del self.banned[addr]
            return False
        return True

    async def _dial_loop(self, addr: str, port: int) -> None:
        delay = 0.5
        while not self._stopping:
            if not self.is_banned(addr) and not any(p.addr == addr for p in self.peers.values()):
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), 5)
                except (OSError, asyncio.TimeoutError):
                    delay = min(delay * 2, 5.0)
                else:
                    delay = 0.5
                    await self._run_peer(reader, writer, addr, port, outbound=True)
            await asyncio.sleep(delay)

    async def _inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        addr = normal_ip(host)
        if self.is_banned(addr):
            self.rejections["banned_peer_refused"] += 1
            writer.close()
            return
        await self._run_peer(reader, writer, addr, port, outbound=False)

    async def _run_peer(self, reader, writer, addr: str, port: int, outbound: bool) -> None:
        task = asyncio.current_task()
        self._peer_tasks.add(task)
        try:
            await self._serve_peer(reader, writer, addr, port, outbound)
        except asyncio.CancelledError:
            pass
        finally:
            self._peer_tasks.discard(task)

    async def _serve_peer(self, reader, writer, addr: str, port: int, outbound: bool) -> None:
        self._next_id += 1
        now = self.clock()
        peer = Peer(self._next_id, addr, port, outbound, writer, connected_at=now, last_recv=now)
        self.peers[peer.id] = peer
        frames = M.FrameReader(self.magic)
        self._send(peer, "version", M.Version(self.nonce, self.host.chain.height, timestamp=int(self.clock()),
                                              from_port=self.listen[1]).encode())
        try:
            while peer.id in self.peers:
                timeout = None if peer.handshake else max(0.1, HANDSHAKE_S - (self.clock() - peer.connected_at))
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except asyncio.TimeoutError:
                    self.rejections["handshake_timeout"] += 1
                    break
                if not data:
                    break
                peer.bytes_in += len(data)
                peer.last_recv = self.clock()
                frames.feed(data)
                while peer.id in self.peers:
                    try:
                        msg = frames.next()
                    except M.MessageError as e:
                        self._misbehave(peer, e.reason, str(e))
                        if e.fatal:
                            self._close(peer)
                        continue
                    if msg is None:
                        break
                    self._dispatch(peer, *msg)
        except (ConnectionError, OSError):
            pass
        finally:
            self._close(peer)

    def _close(self, peer: Peer) -> None:
        if self.peers.pop(peer.id, None) is None:
            return
        peer.in_flight.clear()
        try:
            peer.writer.close()
        except (OSError, RuntimeError):
            pass

    def _send(self, peer: Peer, command: str, payload: bytes = b"") -> None:
        if peer.id not in self.peers or peer.writer.is_closing():
            return
        data = M.frame(self.magic, command, payload)
        peer.bytes_out += len(data)
        peer.writer.write(data)

    def _misbehave(self, peer: Peer, reason: str, detail: str = "") -> None:
        self.rejections[reason] += 1
        peer.score += SCORES.get(reason, 0)
        log.info("peer %s: %s %s (ban score %d)", peer.addr, reason, detail, peer.score)
        if peer.score >= BAN_THRESHOLD:
            self.banned[peer.addr] = self.clock() + self.ban_s
            self.rejections["peer_banned"] += 1
            self._close(peer)

    # --- messages -------------------------------------------------------------------------------------------------
    def _dispatch(self, peer: Peer, command: str, payload: bytes) -> None:
        if command == "version":
            return self._on_version(peer, payload)
        if not peer.got_version:
            return self._misbehave(peer, "before_handshake", command)
        handler = getattr(self, f"_on_{command}", None)
        if handler is None:          # unknown commands are ignored, as in btcd
            self.rejections["unknown_command"] += 1
            return
        try:
            handler(peer, payload)
        except DecodeError as e:
            self._misbehave(peer, "malformed", f"{command}: {e}")

    def _on_version(self, peer: Peer, payload: bytes) -> None:
        if peer.got_version:
            return self._misbehave(peer, "duplicate_version")
        try:
            v = M.Version.decode(payload)
        except DecodeError as e:
            return self._misbehave(peer, "malformed", f"version: {e}")
        if v.nonce == self.nonce:              # we dialled ourselves
            return self._close(peer)
        if v.version < MIN_PROTOCOL:
            self.rejections["old_protocol"] += 1
            return self._close(peer)
        peer.version, peer.got_version, peer.height = v, True, max(v.start_height, 0)
        self._send(peer, "verack")

    def _on_verack(self, peer: Peer, payload: bytes) -> None:
        if not peer.handshake:
            peer.handshake = True
            self._get_headers(peer)
            self._announce_mempool(peer)

    def _announce_mempool(self, peer: Peer) -> None:
        """A transaction accepted while a peer was away (restarted, cut off) would otherwise never reach it, and
        if that peer is the one that mines, never a block: a new connection gets an inv of the whole mempool."""
        txids = list(self.host.chain.mempool.entries)[-M.MAX_INV:]
        if txids:
            self._send(peer, "inv", M.Inventory([(M.MSG_TX, h) for h in txids]).encode())

    def _on_ping(self, peer: Peer, payload: bytes) -> None:
        self._send(peer, "pong", M.encode_nonce(M.decode_nonce(payload, "ping")))

    def _on_pong(self, peer: Peer, payload: bytes) -> None:
        if M.decode_nonce(payload, "pong") == peer.ping_nonce:
            peer.rtt_ms = round((self.clock() - peer.ping_sent) * 1000, 3)
            peer.ping_nonce = None

    def _on_sendheaders(self, peer: Peer, payload: bytes) -> None:
        pass

    def _get_headers(self, peer: Peer, locator: list[bytes] | None = None) -> None:
        self._send(peer, "getheaders", M.GetHeaders(locator or self.host.chain.locator()).encode())

    def _on_getheaders(self, peer: Peer, payload: bytes) -> None:
        req = M.GetHeaders.decode(payload)
        chain = self.host.chain
        start = 0
        for h in req.locator:
            entry = chain.index.get(h)
            if entry is not None and chain.is_main(entry):
                start = entry.height + 1
                break
        out = []
        for height in range(start, min(chain.height + 1, start + M.MAX_HEADERS)):
            h = chain.block_hash_at(height)
            out.append(BlockHeader.parse(chain.store.block_raw(h)[:80]))
            if h == req.stop:
                break
        self._send(peer, "headers", M.encode_headers(out))

    def _known(self, h: bytes) -> bool:
        chain = self.host.chain
        return h in chain.index or h in chain.orphans

    def _height_of(self, h: bytes) -> int | None:
        entry = self.host.chain.index.get(h)
        if entry is not None:
            return entry.height
        e = self.headers.get(h)
        return None if e is None else e.height

    def _on_headers(self, peer: Peer, payload: bytes) -> None:
        headers = M.decode_headers(payload)
        chain = self.host.chain
        now = int(self.clock())
        last = None
        for header in headers:
            h = header.hash
            known = chain.index.get(h)
            if known is not None:
                if known.status == INVALID:
                    return self._misbehave(peer, "invalid_block", f"header of known invalid block {header.hash_hex}")
                last = h
                continue
            try:
                check_header_sanity(header, self.params, now)
            except Rejected as e:
                if e.reason in NOT_THE_SENDERS_FAULT:
                    self.rejections["header_time_too_new"] += 1
                    return
                return self._misbehave(peer, "bad_header", str(e))
            parent_height = self._height_of(header.prev_hash)
            if parent_height is None:
                self.rejections["unconnecting_headers"] += 1
                self._get_headers(peer)
                return
            if h not in self.headers and len(self.headers) < MAX_HEADER_INDEX:
                self.headers[h] = HeaderEntry(header, parent_height + 1, peer.id)
            last = h
        if last is not None:
            peer.height = max(peer.height, self._height_of(last) or 0)
        if len(headers) == M.MAX_HEADERS and last is not None:
            self._get_headers(peer, [last])
        self._request_blocks()

    def _request_blocks(self) -> None:
        """Ask for the blocks of indexed headers, lowest first, from the peer that announced them (or any)."""
        chain = self.host.chain
        for h in [h for h, e in self.headers.items() if h in chain.index]:
            del self.headers[h]
        asked = {h for p in self.peers.values() for h in p.in_flight}
        ready = [p for p in self.peers.values() if p.handshake]
        if not ready:
            return
        wants: dict[int, list[bytes]] = {}
        for h, e in sorted(self.headers.items(), key=lambda kv: kv[1].height):
            if h in asked or h in chain.orphans:
                continue
            peer = self.peers.get(e.source)
            if peer is None or not peer.handshake:
                peer = min(ready, key=lambda p: len(p.in_flight))
                e.source = peer.id
            if len(peer.in_flight) + len(wants.get(peer.id, [])) < MAX_IN_FLIGHT:
                wants.setdefault(peer.id, []).append(h)
        now = self.clock()
        for pid, hashes in wants.items():
            peer = self.peers[pid]
            for h in hashes:
                peer.in_flight[h] = now
            self._send(peer, "getdata", M.Inventory([(M.MSG_BLOCK, h) for h in hashes]).encode())

    def _on_inv(self, peer: Peer, payload: bytes) -> None:
        inv = M.Inventory.decode(payload)
        want_headers = False
        txs = []
        for kind, h in inv.items:
            if kind == M.MSG_BLOCK and not self._known(h) and h not in self.headers:
                want_headers = True
            elif kind == M.MSG_TX and h not in self.host.chain.mempool and h not in self.recent_rejected_txs:
                txs.append((M.MSG_TX, h))
        if want_headers:
            self._get_headers(peer)
        if txs:
            self._send(peer, "getdata", M.Inventory(txs).encode())

    def _on_getdata(self, peer: Peer, payload: bytes) -> None:
        inv = M.Inventory.decode(payload, "getdata")
        chain = self.host.chain
        missing = []
        for kind, h in inv.items:
            if kind == M.MSG_BLOCK:
                raw = chain.store.block_raw(h)
                if raw is not None:
                    self._send(peer, "block", raw)
                    continue
            elif kind == M.MSG_TX:
                entry = chain.mempool.entries.get(h)
                if entry is not None:
                    self._send(peer, "tx", entry.tx.raw)
                    continue
            missing.append((kind, h))
        if missing:
            self._send(peer, "notfound", M.Inventory(missing).encode())

    def _on_notfound(self, peer: Peer, payload: bytes) -> None:
        for kind, h in M.Inventory.decode(payload, "notfound").items:
            peer.in_flight.pop(h, None)

    def _on_block(self, peer: Peer, payload: bytes) -> None:
        result = self.host.process_block(payload, f"peer {peer.addr}")
        if result.block_hash is not None:
            peer.in_flight.pop(result.block_hash, None)
            self.headers.pop(result.block_hash, None)
        if result.status == REJECTED:
            if result.reason not in NOT_THE_SENDERS_FAULT:
                self._misbehave(peer, "invalid_block", f"{result.reason.value}: {result.detail}")
        elif result.status == ORPHAN:
            self._get_headers(peer)
        elif result.status in (ACCEPTED, DUPLICATE):
            entry = self.host.chain.index.get(result.block_hash)
            if entry is not None:
                peer.height = max(peer.height, entry.height)
        self._request_blocks()

    def _on_tx(self, peer: Peer, payload: bytes) -> None:
        try:
            self.host.accept_tx(payload, f"peer {peer.addr}")
        except Rejected as e:
            if e.reason == Reason.MALFORMED:
                return self._misbehave(peer, "malformed", f"tx: {e.detail}")
            if e.reason not in TX_POLICY:
                self._misbehave(peer, "invalid_tx", str(e))
            if len(self.recent_rejected_txs) > 10000:
                self.recent_rejected_txs.clear()
            self.recent_rejected_txs.add(sha256d(payload))

    # --- relay ----------------------------------------------------------------------------------------------------
    def announce_blocks(self, hashes: list[bytes], skip: str | None = None) -> None:
        if not hashes:
            return
        payload = M.Inventory([(M.MSG_BLOCK, h) for h in hashes[-M.MAX_INV:]]).encode()
        for p in list(self.peers.values()):
            if p.handshake and p.addr != skip:
                self._send(p, "inv", payload)

    def announce_tx(self, txid: bytes, skip: str | None = None) -> None:
        payload = M.Inventory([(M.MSG_TX, txid)]).encode()
        for p in list(self.peers.values()):
            if p.handshake and p.addr != skip:
                self._send(p, "inv", payload)

    # --- housekeeping -----------------------------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(1.0)
            now = self.clock()
            for p in list(self.peers.values()):
                for h, asked in list(p.in_flight.items()):
                    if now - asked > STALL_S:           # ask someone else
                        del p.in_flight[h]
                        if h in self.headers:
                            self.headers[h].source = -1
                if p.ping_nonce is not None and now - p.ping_sent > SILENT_S and now - p.last_recv > SILENT_S:
                    self.rejections["silent_peer"] += 1
                    log.info("peer %s: silent for %.0f s, disconnected", p.addr, now - p.last_recv)
                    self._close(p)
                    continue
                if p.handshake and p.ping_nonce is None and now - p.ping_sent > PING_S:
                    p.ping_nonce, p.ping_sent = int.from_bytes(os.urandom(8), "little"), now
                    self._send(p, "ping", M.encode_nonce(p.ping_nonce))
            self._request_blocks()

    def status(self) -> dict:
        return {"listen": f"[{self.listen[0]}]:{self.listen[1]}", "peers": [p.describe() for p in self.peers.values()],
                "configured_peers": [f"[{a}]:{p}" for a, p in self.peer_addrs], "headers_pending": len(self.headers),
                "banned": sorted(a for a in list(self.banned) if self.is_banned(a)),
                "rejections": dict(self.rejections)}
