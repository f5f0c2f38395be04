"""One device's market, running: its issuer chain, a replicator, the swaps it is in, and the PKT chain behind them.

This is the driver of the pure protocol code (issuer.py, replicator.py, swap.py): it keeps the HtlcIndex in step
with a chain node (chain_client.py), turns the swaps' actions into chain transactions and HTTP messages, and
persists what must survive a restart. The HTTP side is api.py; the process is service.py.

Transport (the choices pktlab makes; the market messages themselves are wire.py's):

* A device's market is reached at ``http://[its fc00 address]:MARKET_PORT``. Devices sell their own leases, so a
  seller's URL is also its issuer's.
* Swap messages go buyer -> seller as ``POST /swap``; the seller's answers (accept, cancel) come back in the
  response (``{"replies": [message, ...]}``), so a seller never needs to reach a buyer. A message the seller
  makes on its own (an accept it sends again) waits in that swap's outbox for the buyer's next message; the
  buyer repeats its last message on every tick until it is answered.
* Lock requests and reveals go to the issuer as ``POST /issuer``; its updates are fetched from
  ``GET /updates?issuer=KEY&from=N`` (pull gossip: a buyer's replicator asks its seller for what it lacks).
* Chain actions: FundHtlc, ClaimHtlc, RefundHtlc are sent at most once per PKT block each (a claim a reorg
  dropped is sent again on a later block, as swap.py asks).
* Push gossip between markets (``peers``: the other markets' URLs): every update our issuer commits and every
  discredit proof our replicator makes or newly accepts goes to each peer as ``POST /gossip``, in order, from a
  queue per peer (at most MAX_GOSSIP_QUEUE messages; in memory: a restart forgets it). A peer that does not
  answer, or answers ``unknown_pkt_block`` (its chain view is behind the update's anchor), gets the message again
  on the next round; any other answer ends it (a refusal is counted as ``gossip_refused_CODE``). Updates of other
  issuers are not passed on (each issuer pushes its own), proofs are: a proof reaches every market that refuses
  duplicates, so the flood ends. A received proof is checked by our replicator (faults.verify, with nothing but
  the proof); from then on the issuer's updates, lock requests and reveals are refused (``issuer_discredited``),
  and so are purchases of its tokens.
* The fault switch ``double_issue`` makes our issuer a double issuer: every update it commits also gets a *twin*
  (same height, prev and anchor, no operations, signed by us) that goes to the first peer only, after the update
  itself. That peer's replicator holds both, makes the ``double_update`` proof and gossips it; the other peers saw
  only the update and verify the proof on its own.

Persisted in ``<state_dir>/market/``: ``issuer.jsonl`` (this device's issuer chain, one encoded update a line,
appended before it is gossiped: a restarted issuer continues the same chain, never forks it) and
``swaps.jsonl`` (a buyer's swaps: the proposal, the accept and the funded outpoint, each appended before the
swap acts on it), so a restarted buyer finishes or refunds its swaps. A restarted seller forgets its open offers:
funds are not at risk (the buyer refunds; a claim already on the chain makes the issuer transfer).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections import Counter, deque
from pathlib import Path

import aiohttp

from node.chain.keys import Key
from node.cjdns import keys as cjdns_keys

from .chain_client import ChainClient, ChainClientError
from .auctions import Auctions
from .channels import Channels
from .errors import MarketError
from .hubs import HubChannels
from .evidence import Policy
from .issuer import Issuer
from .replicator import Replicator
from .swap import (
    COMPLETED,
    SWAP_TYPES,
    BuyerSwap,
    ClaimHtlc,
    FundHtlc,
    Publish,
    RefundHtlc,
    SellerSwap,
    Send,
    SwapParams,
)
from .faults import Discredit
from .token_chain import LockRequest, Update, make_update
from .wire import MAX_UINT, Name, WireError, decode_as, message_type

log = logging.getLogger(__name__)
MARKET_PORT = 64780
MAX_GOSSIP_QUEUE = 1024                 # messages waiting per peer
GOSSIP_RETRY = {"unreachable", "unknown_pkt_block"}     # a peer not ready for a message yet: again next round


OFFER_KEYS = {"token", "lease", "link", "kbps", "term_s", "price"}


def check_offer(o) -> dict:
    """An offer {token, lease, link, kbps, term_s, price} checked field by field (MarketError bad_field)."""
    if not isinstance(o, dict) or set(o) != OFFER_KEYS:
        raise MarketError("bad_field", f"an offer has the fields {', '.join(sorted(OFFER_KEYS))}")
    for k in ("token", "lease", "link"):
        try:
            Name().decode(o[k], k)
        except WireError as e:
            raise MarketError("bad_field", e.detail) from None
    for k in ("kbps", "price"):
        if isinstance(o[k], bool) or not isinstance(o[k], int) or not 0 < o[k] <= MAX_UINT:
            raise MarketError("bad_field", f"{k}: a whole number > 0")
    if isinstance(o["term_s"], bool) or not isinstance(o["term_s"], (int, float)) or not 0 < o["term_s"] < 1e9:
        raise MarketError("bad_field", "term_s: seconds > 0")
    return o


def _is_lock_request(data: bytes) -> bool:
    try:
        decode_as({LockRequest.TYPE: LockRequest}, data)
    except WireError:
        return False
    return True


class MarketNode:
    def __init__(self, name: str, node_secret: bytes, wallet: Key, chain: ChainClient, state_dir: Path, *,
                 offers: list | None = None, params: SwapParams | None = None, fee: int = 10_000,
                 refuse_locks: bool = False, peers: list | None = None, double_issue: bool = False,
                 lease_devices=None, refund_blocks: int | None = None, url: str = "", hub: bool = False,
                 hub_fee: int = 0):
        self.name = name
        self.refuse_locks = refuse_locks        # a fault to inject: our issuer ignores every lock request
        self.double_issue = double_issue        # a fault to inject: our issuer forks its chain (see above)
        self.gossip_peers = [u.rstrip("/") for u in peers or []]
        self.gossip_queue: dict[str, deque] = {u: deque() for u in self.gossip_peers}
        self.secret = node_secret
        self.key = cjdns_keys.signing_public_key(node_secret)
        self.wallet, self.chain, self.params, self.fee = wallet, chain, params or SwapParams(), fee
        self.dir = Path(state_dir) / "market"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.replicator = Replicator(chain.index, Policy(frozenset({self.key})), node_secret)
        self.issuer = Issuer(node_secret, chain.index)
        self.offers = list(offers or [])
        self.swaps: dict[bytes, object] = {}            # swap id -> SellerSwap | BuyerSwap
        self.peers: dict[bytes, str] = {}               # buyer swaps: swap id -> seller URL
        self.outbox: dict[bytes, list] = {}             # seller swaps: messages waiting for the buyer
        self.last_send: dict[bytes, bytes] = {}         # buyer swaps: a message the seller did not get
        self.chain_sent: dict[tuple, int] = {}          # (action) -> PKT height it was last sent at
        self.counters: Counter = Counter()
        self.rejected: Counter = Counter()
        self._http: aiohttp.ClientSession | None = None
        self.channels = Channels(self, lease_devices, self.dir, refund_blocks)
        self.hubs = HubChannels(self, self.dir, url, hub, hub_fee)
        self.auctions = Auctions(self, lease_devices)

    # -- start, persistence ----------------------------------------------------------------------------------

    async def start(self, now: float) -> None:
        await self.chain.sync()
        path = self.dir / "issuer.jsonl"
        if path.exists():
            updates = [Update.decode(line.encode()) for line in path.read_text().splitlines() if line]
            self.issuer.restore(updates)
            for u in updates:
                self.replicator.receive(u.encode())
        for o in self.offers:
            if o["token"] not in self.issuer.state.tokens:
                self.sell(o, now)
        self._restore_swaps()
        self.channels.restore()
        self.hubs.restore()

    def sell(self, offer: dict, now: float) -> dict:
        """Issue a lease token (an offer checked by check_offer) for the term from now; returns the offer."""
        o = check_offer(offer)
        if self.replicator.is_discredited(self.key):
            raise MarketError("issuer_discredited", "our issuer is discredited: no market deals with it any more")
        if o["token"] in self.issuer.state.tokens:
            raise MarketError("duplicate_token", f"token {o['token']} was already issued")
        updates = self.issuer.issue_lease(o["token"], o["lease"], o["link"], o["kbps"], int(now),
                                          int(now + o["term_s"]), o["price"])
        if not updates:
            raise MarketError("not_issued", f"the issuer refused: {dict(self.issuer.rejected)}")
        self._commit(updates)
        return next(x for x in self.my_offers() if x["token"] == o["token"])

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        await self.chain.close()

    def _commit(self, updates: list) -> None:
        """Our issuer's new updates: on disk first, then into our replicator and out to our peers."""
        if not updates:
            return
        with open(self.dir / "issuer.jsonl", "ab") as f:
            f.writelines(u + b"\n" for u in updates)
            f.flush()
            os.fsync(f.fileno())
        for u in updates:
            self.replicator.receive(u)
            self._gossip(u)
            if self.double_issue and self.gossip_peers:
                self._gossip(self._twin(Update.decode(u)), self.gossip_peers[:1])

    def _twin(self, u: Update) -> bytes:
        """The double issuer's second update at ``u``'s height: the same links, no operations."""
        self.counters["twin_issued"] += 1
        return make_update(self.secret, u.height, u.prev, u.pkt_height, u.pkt_block, ()).encode()

    def _journal(self, record: dict) -> None:
        with open(self.dir / "swaps.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _restore_swaps(self) -> None:
        """The buyer swaps of the journal, as far as they got (a seller that restarts forgets its offers: the
        buyer refunds, or the issuer transfers from a claim already on the chain)."""
        path = self.dir / "swaps.jsonl"
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            r = json.loads(line)
            sid = bytes.fromhex(r["swap"])
            if r["kind"] == "buy":
                s = self._buyer(r["url"], bytes.fromhex(r["issuer"]), r["token"], r["price"], sid)
                s.phase, s.started = "proposed", r["started"]
            elif r["kind"] == "accepted":
                self.swaps[sid].resume(accept=bytes.fromhex(r["accept"]))     # no funding journaled: fund next
            elif r["kind"] == "funded":
                self.swaps[sid].resume(outpoint=r["outpoint"])

    # -- offers and tokens -----------------------------------------------------------------------------------

    def my_offers(self) -> list:
        """Our tokens that we own and that are not locked: what we sell, with their terms."""
        out = []
        for t in self.replicator.state(self.key).tokens.values():
            if t.owner == self.key and t.lock is None and t.kind == "lease":
                op = t.op
                out.append({"token": t.id, "lease": op.lease, "link": op.link, "kbps": op.kbps, "start": op.start,
                            "end": op.end, "price": op.price, "issuer": self.key.hex()})
        return out

    def tokens(self) -> list:
        out = []
        for issuer, state in self.replicator.states.items():
            for t in state.tokens.values():
                out.append({"issuer": issuer.hex(), "token": t.id, "kind": t.kind, "owner": t.owner.hex(),
                            "mine": t.owner == self.key, "locked": t.lock is not None,
                            **{k: getattr(t.op, k) for k in ("lease", "link", "kbps", "start", "end", "price")
                               if hasattr(t.op, k)}})
        return out

    # -- the seller side -------------------------------------------------------------------------------------

    def _seller(self, token: str, secret: bytes, nonce: bytes) -> SellerSwap:
        t = self.replicator.token(self.key, token)
        if t is None:
            raise MarketError("unknown_token", f"we issued no token {token}")
        return SellerSwap(self.secret, self.wallet.pubkey, self.key, token, t.op.price, self.chain.index,
                          self.replicator, secret, nonce, self.params)

    async def on_swap_message(self, data: bytes) -> list:
        """A swap message from a buyer; returns our answers (encoded messages)."""
        try:
            msg = decode_as(SWAP_TYPES, data)
        except WireError as e:
            self.rejected[e.code] += 1
            raise MarketError(e.code, e.detail) from None
        swap = self.swaps.get(msg.swap)
        fresh = swap is None
        if fresh:
            if msg.TYPE != "swap_propose":
                self.rejected["unknown_swap"] += 1
                raise MarketError("unknown_swap", f"no swap {msg.swap.hex()}")
            if msg.issuer != self.key:
                self.rejected["wrong_token"] += 1
                raise MarketError("wrong_token", "we sell only the tokens we issued")
            if self.in_swap(msg.token) or self.channels.holds(msg.token):
                self.rejected["busy"] += 1
                raise MarketError("busy", f"{msg.token} is in another swap or a channel")
            secret, nonce = secrets.token_bytes(32), secrets.token_bytes(16)
            swap = self._seller(msg.token, secret, nonce)
        elif not isinstance(swap, SellerSwap):
            self.rejected["unexpected"] += 1
            raise MarketError("unexpected", "that swap is one we buy in")
        before = Counter(swap.rejected)
        actions = swap.receive(data)
        new = swap.rejected - before
        if new:
            code = next(iter(new))
            self.rejected.update(new)
            raise MarketError(code, f"{msg.TYPE} refused: {code}")
        if fresh:
            self._journal({"kind": "sell", "swap": msg.swap.hex(), "token": msg.token, "secret": secret.hex(),
                           "nonce": nonce.hex(), "propose": bytes(data).hex()})
            self.swaps[msg.swap] = swap
        replies = self.outbox.pop(msg.swap, []) + await self._seller_actions(swap, actions)
        return [r.decode() for r in replies]

    def on_issuer_message(self, data: bytes) -> None:
        """A lock request or reveal for our issuer (also witnessed by our replicator)."""
        if self.refuse_locks and _is_lock_request(data):
            self.counters["lock_refused"] += 1
            raise MarketError("lock_refused", "this issuer refuses to lock (an injected fault)")
        before = sum(self.issuer.rejected.values())
        self.replicator.receive(data)
        self._commit(self.issuer.receive(data))
        if sum(self.issuer.rejected.values()) > before:
            code = (self.issuer.rejected - Counter()).most_common(1)[0][0]
            raise MarketError(code, "the issuer did not act on it")

    def updates(self, issuer: bytes, since: int) -> list:
        return [u.encode().decode() for u in self.replicator.updates(issuer, since)]

    # -- gossip between markets -----------------------------------------------------------------------------

    def on_gossip(self, data: bytes) -> None:
        """A message a peer pushed (an update or a discredit proof): into our replicator, passing on the proofs it
        makes or newly accepts; MarketError with the replicator's reason if it refused the message."""
        before = Counter(self.replicator.rejected)
        out = self.replicator.receive(data)
        refused = self.replicator.rejected - before
        if refused:
            code = next(iter(refused))
            raise MarketError(code, f"the replicator refused it: {code}")
        self._pass_on(out)

    def _pass_on(self, messages) -> None:
        for m in messages:
            if message_type(m)[0] == Discredit.TYPE:
                proof = Discredit.decode(m)
                self.counters["discredit_accepted"] += 1
                log.warning("%s: issuer %s discredited (%s)", self.name, proof.issuer.hex()[:16], proof.fault)
                self._gossip(m)

    def _gossip(self, data: bytes, peers=None) -> None:
        for url in self.gossip_peers if peers is None else peers:
            q = self.gossip_queue[url]
            if len(q) >= MAX_GOSSIP_QUEUE:
                q.popleft()
                self.counters["gossip_dropped"] += 1
            q.append(data)

    async def gossip_round(self) -> None:
        """Send what waits for each peer, the peers side by side, each in order (see the module docstring)."""
        await asyncio.gather(*(self._flush(url) for url in self.gossip_peers))

    async def _flush(self, url: str) -> None:
        q = self.gossip_queue[url]
        while q:
            try:
                await self._post(f"{url}/gossip", q[0])
                self.counters["gossip_sent"] += 1
            except MarketError as e:
                if e.code in GOSSIP_RETRY:
                    self.counters[f"gossip_retry_{e.code}"] += 1
                    return
                self.counters[f"gossip_refused_{e.code}"] += 1
            q.popleft()

    # -- the buyer side --------------------------------------------------------------------------------------

    def _buyer(self, url: str, issuer: bytes, token: str, price: int, swap: bytes) -> BuyerSwap:
        s = BuyerSwap(self.secret, self.wallet.pubkey, issuer, token, price, self.chain.index, self.replicator,
                      swap, self.params)
        self.swaps[swap], self.peers[swap] = s, url.rstrip("/")
        return s

    async def buy(self, url: str, issuer: bytes, token: str, price: int) -> bytes:
        if self.replicator.is_discredited(issuer):
            raise MarketError("issuer_discredited", f"issuer {issuer.hex()[:16]}.. is discredited")
        if any(isinstance(s, BuyerSwap) and s.token == token and s.issuer == issuer and not s.outcome
               for s in self.swaps.values()):
            raise MarketError("busy", f"already buying {token}")
        sid = secrets.token_bytes(16)
        s = self._buyer(url, issuer, token, price, sid)
        actions = s.start()
        self._journal({"kind": "buy", "swap": sid.hex(), "url": url, "issuer": issuer.hex(), "token": token,
                       "price": price, "started": s.started})
        await self._run(sid, s, actions)
        return sid

    # -- the loop --------------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """After the PKT chain may have moved: sync, pull issuer chains, settle, drive every swap."""
        try:
            await self.chain.sync()
        except ChainClientError as e:
            self.counters["chain_unreachable"] += 1
            log.warning("%s: %s", self.name, e)
            return
        await self._pull_updates()
        self._commit(self.issuer.tick())
        self._pass_on(self.replicator.tick())
        for sid, s in list(self.swaps.items()):
            if s.outcome:
                continue
            actions = s.tick()
            if isinstance(s, SellerSwap):
                self.outbox.setdefault(sid, []).extend(await self._seller_actions(s, actions))
            else:
                if sid in self.last_send and not any(isinstance(a, Send) for a in actions):
                    await self._send(sid, s, self.last_send[sid])       # unanswered: say it again
                await self._run(sid, s, actions)
        await self.channels.tick()
        await self.hubs.tick()
        await self.auctions.tick()

    async def _pull_updates(self) -> None:
        for sid, url in self.peers.items():
            s = self.swaps[sid]
            if s.outcome == COMPLETED and self.replicator.token(s.issuer, s.token).owner == self.key:
                continue
            have = self.replicator.state(s.issuer).length
            try:
                answer = await self._get(f"{url}/updates?issuer={s.issuer.hex()}&from={have}")
            except MarketError:
                continue
            for text in answer.get("updates", []):
                self._pass_on(self.replicator.receive(text.encode()))

    async def _seller_actions(self, swap, actions) -> list:
        """A seller's actions: publish to our own issuer, chain transactions; returns the messages to send."""
        out = []
        for a in actions:
            if isinstance(a, Send):
                out.append(a.data)
            elif isinstance(a, Publish):
                try:
                    self.on_issuer_message(a.data)
                except MarketError:
                    pass                # counted by the issuer
            else:
                await self._chain_action(a)
        return out

    async def _run(self, sid: bytes, swap, actions) -> None:
        """A buyer's actions: messages to the seller, publications to the issuer, chain transactions."""
        url = self.peers[sid]
        for a in actions:
            if isinstance(a, Send):
                await self._send(sid, swap, a.data)
            elif isinstance(a, Publish):
                self.replicator.receive(a.data)
                try:
                    await self._post(f"{url}/issuer", a.data)
                except MarketError as e:
                    self.counters[f"publish_{e.code}"] += 1
            elif isinstance(a, FundHtlc):
                try:
                    outpoint = await self.chain.fund(self.wallet, a.amount, a.hash, a.pay_to, a.refund_to,
                                                     a.refund_height, self.fee)
                except ChainClientError as e:
                    self.counters["fund_failed"] += 1
                    log.warning("%s: fund: %s", self.name, e)
                    swap.phase = "accepted"         # try again on the next tick (until too late)
                    continue
                self._journal({"kind": "funded", "swap": sid.hex(), "outpoint": outpoint})
                await self._run(sid, swap, swap.funded(outpoint))
            else:
                await self._chain_action(a)

    async def _send(self, sid: bytes, swap, data: bytes) -> None:
        """POST a message to the seller and act on its replies; kept to say again if the seller is not reached."""
        try:
            answer = await self._post(f"{self.peers[sid]}/swap", data)
        except MarketError as e:
            self.counters[f"send_{e.code}"] += 1
            if e.code == "unreachable":
                self.last_send[sid] = data
            return
        self.last_send.pop(sid, None)
        for reply in answer.get("replies", []):
            had_accept = swap.accept is not None
            actions = swap.receive(reply.encode())
            if swap.accept is not None and not had_accept:
                self._journal({"kind": "accepted", "swap": sid.hex(), "accept": swap.accept.encode().hex()})
            await self._run(sid, swap, actions)

    async def _chain_action(self, a) -> None:
        height = self.chain.index.height()
        if self.chain_sent.get(a) == height:
            return
        self.chain_sent[a] = height
        try:
            if isinstance(a, ClaimHtlc):
                await self.chain.claim(a.outpoint, self.wallet, a.preimage, self.fee)
            elif isinstance(a, RefundHtlc):
                await self.chain.refund(a.outpoint, self.wallet, self.fee)
            self.counters[f"{type(a).__name__}_sent"] += 1
        except ChainClientError as e:
            self.counters[f"{type(a).__name__}_refused"] += 1
            log.info("%s: %s: %s", self.name, type(a).__name__, e)

    # -- what channels.py asks of us ----------------------------------------------------------------------------

    def offer(self, token: str) -> dict | None:
        return next((o for o in self.my_offers() if o["token"] == token), None)

    def auction_terms(self, name: str):
        """Our auction ``name`` (bids.py's AuctionTerms), or None."""
        return self.auctions.terms(name)

    def in_swap(self, token: str) -> bool:
        return any(isinstance(s, SellerSwap) and s.token == token and not s.outcome for s in self.swaps.values())

    async def get(self, url: str) -> dict:
        return await self._get(url)

    async def post(self, url: str, data: bytes) -> dict:
        return await self._post(url, data)

    # -- HTTP to other markets -------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._http

    async def _post(self, url: str, data: bytes) -> dict:
        return await self._request("POST", url, data)

    async def _get(self, url: str) -> dict:
        return await self._request("GET", url, None)

    async def _request(self, method: str, url: str, data) -> dict:
        try:
            async with self._session().request(method, url, data=data) as r:
                answer = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise MarketError("unreachable", f"{method} {url}: {type(e).__name__}: {e}") from None
        if r.status != 200:
            raise MarketError(answer.get("error", f"http_{r.status}"), answer.get("detail", ""))
        return answer

    # -- what we show ----------------------------------------------------------------------------------------

    def swap_status(self, sid: bytes) -> dict:
        s = self.swaps.get(sid)
        if s is None:
            raise MarketError("unknown_swap", f"no swap {sid.hex()}")
        out = {"swap": sid.hex(), "role": "seller" if isinstance(s, SellerSwap) else "buyer", "token": s.token,
               "issuer": s.issuer.hex(), "phase": s.phase, "outcome": s.outcome, "rejected": dict(s.rejected),
               "outpoint": s.outpoint}
        if s.accept is not None:
            out.update(hash=s.accept.hash.hex(), lock=s.accept.lock.hex(), htlc_refund=s.accept.htlc_refund,
                       lock_timeout=s.accept.lock_timeout)
        return out

    def status(self) -> dict:
        return {"node": self.name, "key": self.key.hex(), "wallet": self.wallet.address,
                "pkt_height": self.chain.index.height(), "issuer_updates": len(self.issuer.updates),
                "wallet_key": self.wallet.pubkey.hex(), "offers": self.my_offers(),
                "swaps": [self.swap_status(s) for s in self.swaps], "channels": self.channels.list(),
                "channel_counters": dict(self.channels.counters), "hub": self.hubs.info(),
                "hub_channels": self.hubs.list(),
                "auctions": self.auctions.list(), "bids": self.auctions.bids(),
                "auction_counters": dict(self.auctions.counters), "bid_rejected": dict(self.auctions.rejected),
                "counters": dict(self.counters), "rejected": dict(self.rejected),
                "issuer_rejected": dict(self.issuer.rejected), "replicator_rejected": dict(self.replicator.rejected),
                "issuers": self.issuers(), "gossip_waiting": {u: len(q) for u, q in self.gossip_queue.items()}}

    def issuers(self) -> list:
        """Every issuer whose chain we hold or that we refuse: updates held, and the proof's fault if refused."""
        out = []
        for k in sorted(set(self.replicator.chains) | set(self.replicator.discredited)):
            proof = self.replicator.discredited.get(k)
            out.append({"issuer": k.hex(), "updates": len(self.replicator.chains.get(k, [])), "mine": k == self.key,
                        "discredited": proof is not None, "fault": proof.fault if proof else None})
        return out
