"""HTLC-forwarding channels through a hub, running: the driver of hub.py and hub_chain.py in a market
(market_node.py), on the PKT chain and over HTTP between markets.

Any market can fund a hub channel to another (it is the channel's *sender*, the other its *receiver*). A market
with the setting ``hub`` routes: a channel opened to it is an incoming hop (a payer's), a channel it opens is an
outgoing hop (to a payee), and hub.py's :class:`~node.market.hub.Hub` forwards each HTLC by the margin rule for
its fee. A market without it pays with the channels it sends on and is paid with those it receives on.

A payment: the payee draws a preimage (``POST /invoices`` {"amount", "hold"?} -> {"hash", "key"}; a hold invoice
is fulfilled only when the payee says so, ``POST /invoices/HASH/release``); the payer adds an HTLC
(that hash, amount + the hub's fee, expiry = its height + ``expiry_blocks``, ``to`` = the payee's key) on its
channel to the hub (``POST /hub_pay``); the hub forwards it (amount - fee, expiry - margin) on its channel to the
payee; the payee fulfills it if the hash is an invoice of its own for at most that amount, else fails it
(``unknown_invoice``); each fulfill settles its hop and goes back one hop; a fail, or an expiry, cancels both hops.

HTTP between markets (api.py): a sender's market sends ``POST /hub_open`` {"open": hub_open, "sender_pk", "fee",
"funding_tx", "url": the sender market's URL} (an unconfirmed funding is refused ``unconfirmed``; the sender says it
again on its next tick); then every message goes to the market of the channel's other end as ``POST /hub_msg``:
hub_chain_state (sender -> receiver), htlc_fulfill and htlc_fail (receiver -> sender). Each market keeps an outbox
per peer URL, sent in order on every tick; a peer that does not answer keeps its messages queued, one that refuses
a message as ``replayed`` (it had it before we restarted) or ``closed`` has it dropped, counted
``hub_refused_CODE``; any other refusal (its chain view behind ours) leaves it queued, counted
``hub_retry_CODE``. A message we refuse gets 400 with hub.py's reason (``bad_signature``, ``replayed``,
``wrong_hash``, ``bad_close_sig``, ...), counted in ``rejected``.

On the chain (hub_chain.py): the receiver closes with the latest state when it must (an HTLC it fulfilled is not
settled CLOSE_WITHIN blocks before its expiry: hub.py's ``due``), CLOSE_MARGIN blocks before the refund height, or
when asked (``POST /hub_channels/ID/close``); then each HTLC output of the close is claimed by the receiver with
its preimage or refunded to the sender from its expiry on, and a hub that sees its payee's claim on the chain
learns the preimage there and claims its incoming hop with it. The sender refunds the whole capacity once the
refund height passes with the funding unspent.

Persisted in ``<state_dir>/market/hubs.jsonl``: every input, appended before it is acted on (a channel we fund or
accept, an invoice, a payment, each message we accept with its PKT height, each expiry round) and each message
delivered per peer. (A receiver that refuses an add for good, e.g. ``expired`` after it was down past the HTLC's
expiry, stops that channel's queue: the HTLC is not in the receiver's states, so its close gives it back to the
sender.) A restarted market replays the inputs through the same code at their heights (so it makes the
same states) and sends again what was not delivered.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
from collections import Counter
from pathlib import Path

from node.chain.tx import Transaction
from node.chain.wallet import WalletError
from node.chain.wire import DecodeError

from .chain_client import ChainClientError
from .channel import ChannelError
from .errors import MarketError
from .hub import CLOSE_WITHIN, Hub, HtlcFail, HtlcFulfill, HtlcReceiver, HtlcSender, HubOpen, HubState, open_hub_channel
from .hub_chain import (
    HubChainState,
    HubTerms,
    chain_state,
    check_chain_state,
    close_by,
    closed,
    funding_ok,
    funding_tx,
    refund_tx,
    sign_close,
)
from .wire import WireError, decode_as, message_type, sha256

log = logging.getLogger(__name__)

OPENING, OPEN, CLOSING, CLOSED, REFUNDED, REFUSED = "opening", "open", "closing", "closed", "refunded", "refused"
UNKNOWN_INVOICE = "unknown_invoice"
DEFAULT_EXPIRY = 3 * CLOSE_WITHIN               # blocks from a payment to its HTLC's expiry on the first hop
DROP = {"replayed", "closed"}                   # a peer's answers that end a message's delivery


class _HubChannel:
    def __init__(self, role: str, terms: HubTerms, url: str, state: str):
        self.role, self.terms, self.url, self.state = role, terms, url, state
        self.close_sig: bytes | None = None     # receiver: the sender's, for the latest state
        self.close_txid: str | None = None
        self.funding_tx = ""
        self.asked_close = False

    @property
    def id(self) -> str:
        return self.terms.open.channel.hex()


class HubChannels:
    """A market's hub channels, both ends. ``market`` gives ``key``, ``secret``, ``wallet``, ``chain``, ``fee``,
    ``get``/``post``; ``url`` is our market's URL (what our receivers send back to)."""

    def __init__(self, market, directory: Path, url: str = "", hub: bool = False, hub_fee: int = 0,
                 refund_blocks: int = 60):
        self.m, self.url, self.refund_blocks = market, url, refund_blocks
        self.hub = Hub(market.secret, fee=hub_fee) if hub else None
        self.path = Path(directory) / "hubs.jsonl"
        self.channels: dict[str, _HubChannel] = {}
        self.sending: dict[str, HtlcSender] = {}          # a non-hub market's own ends, by channel id
        self.receiving: dict[str, HtlcReceiver] = {}
        self.invoices: dict[bytes, dict] = {}             # hash -> {"preimage", "amount"}
        self.payments: dict[bytes, dict] = {}             # our payments (payer): hash -> state
        self.outbox: dict[str, list] = {}                 # peer URL -> messages not yet delivered
        self.chain_sent: dict[str, int] = {}              # chain action -> PKT height it was last sent at
        self.counters: Counter = Counter()
        self.rejected: Counter = Counter()
        self._replaying = False

    # -- persistence ---------------------------------------------------------------------------------------------

    def _journal(self, record: dict) -> None:
        if self._replaying:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def restore(self) -> None:
        if not self.path.exists():
            return
        delivered = Counter()
        self._replaying = True
        try:
            for line in self.path.read_text().splitlines():
                r = json.loads(line)
                kind = r["kind"]
                if kind == "fund":
                    self._sender(r)
                elif kind == "opened":
                    self.channels[r["channel"]].state = OPEN
                elif kind == "accept":
                    self._receiver(r)
                elif kind == "invoice":
                    self._invoice(bytes.fromhex(r["preimage"]), r["amount"], r["hold"])
                elif kind == "release":
                    self._release(bytes.fromhex(r["hash"]), r["height"])
                elif kind == "pay":
                    self._pay(r)
                elif kind == "msg":
                    self._on_message(r["data"].encode(), r["height"])
                elif kind == "expire":
                    self._expire(r["height"])
                elif kind == "close":
                    self.channels[r["channel"]].asked_close = True
                elif kind == "delivered":
                    delivered[r["url"]] += 1
        finally:
            self._replaying = False
        for url, n in delivered.items():
            del self.outbox.get(url, [])[:n]

    def _sender(self, r: dict) -> _HubChannel:
        terms = HubTerms(HubOpen.decode(r["open"].encode()), self.m.wallet.pubkey, bytes.fromhex(r["receiver_pk"]),
                         r["fee"])
        c = _HubChannel("sender", terms, r["url"], OPENING)
        c.funding_tx = r["funding_tx"]
        if self.hub is not None:
            self.hub.open(terms.open)
        else:
            self.sending[c.id] = HtlcSender(terms.open, self.m.secret)
        self.channels[c.id] = c
        return c

    def _receiver(self, r: dict) -> _HubChannel:
        terms = HubTerms(HubOpen.decode(r["open"].encode()), bytes.fromhex(r["sender_pk"]), self.m.wallet.pubkey,
                         r["fee"])
        c = _HubChannel("receiver", terms, r["url"], OPEN)
        if self.hub is not None:
            self.hub.accept(terms.open)
        else:
            self.receiving[c.id] = HtlcReceiver(terms.open, self.m.secret)
        self.channels[c.id] = c
        return c

    def sender_channel(self, url: str) -> HubOpen | None:
        """The terms of our open hub channel to the market at ``url`` (what a lease paid through it names)."""
        return next((c.terms.open for c in self.channels.values()
                     if c.role == "sender" and c.url == url.rstrip("/") and c.state == OPEN), None)

    def paid_by(self, url: str) -> bool:
        """Whether the market at ``url`` has an open hub channel to us."""
        return any(c.role == "receiver" and c.url == url.rstrip("/") and c.state == OPEN
                   for c in self.channels.values())

    def fulfilled(self, hash: bytes) -> bool:
        """Whether we fulfilled an HTLC of that hash (the payer can no longer take it back)."""
        return any(hash in end.preimages for end in self.receiving.values())

    def end(self, c: _HubChannel):
        """hub.py's end of the channel: ours, or the hub's."""
        if self.hub is None:
            return (self.sending if c.role == "sender" else self.receiving)[c.id]
        o = c.terms.open
        return self.hub.outbound[o.receiver] if c.role == "sender" else self.hub.inbound[o.channel]

    # -- opening (the sender) --------------------------------------------------------------------------------------

    async def open(self, url: str, capacity: int, refund_blocks: int | None = None) -> str:
        """Fund a hub channel of ``capacity`` to the market at ``url``; the open goes there once the funding is
        mined."""
        url = url.rstrip("/")
        info = await self.m.get(f"{url}/hub")
        receiver_pk, receiver = bytes.fromhex(info["wallet_key"]), bytes.fromhex(info["key"])
        refund_h = self.m.chain.index.height() + (refund_blocks or self.refund_blocks)
        try:
            coins = await self.m.chain.coins(self.m.wallet)
            tx = funding_tx(self.m.chain.params, self.m.wallet, coins, receiver_pk, capacity, refund_h, self.m.fee)
            txid = await self.m.chain.send(tx)
        except (WalletError, ValueError, ChainClientError) as e:
            raise MarketError("fund_failed", str(e)) from None
        terms = open_hub_channel(self.m.secret, secrets.token_bytes(16), receiver, capacity, refund_h, f"{txid}:0")
        r = {"kind": "fund", "url": url, "open": terms.encode().decode(), "receiver_pk": receiver_pk.hex(),
             "fee": self.m.fee, "funding_tx": tx.raw.hex()}
        self._journal(r)
        return self._sender(r).id

    async def _opening(self, c: _HubChannel) -> None:
        body = {"open": c.terms.open.encode().decode(), "sender_pk": c.terms.sender_pk.hex(), "fee": c.terms.fee,
                "funding_tx": c.funding_tx, "url": self.url}
        try:
            await self.m.post(f"{c.url}/hub_open", json.dumps(body).encode())
        except MarketError as e:
            self.counters[f"open_{e.code}"] += 1
            if e.code not in ("unreachable", "unconfirmed"):
                c.state = REFUSED
            return
        self._journal({"kind": "opened", "channel": c.id})
        c.state = OPEN

    # -- accepting (the receiver) ------------------------------------------------------------------------------------

    def on_open(self, body: bytes) -> dict:
        try:
            r = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise MarketError("bad_json", f"the body is not JSON: {e}") from None
        keys = {"open", "sender_pk", "fee", "funding_tx", "url"}
        if not isinstance(r, dict) or set(r) != keys or isinstance(r["fee"], bool) or not isinstance(r["fee"], int) \
                or not all(isinstance(r[k], str) for k in keys - {"fee"}) or not r["url"].startswith("http://"):
            raise MarketError("bad_field", 'expected {"open", "sender_pk", "fee", "funding_tx", "url": http://...}')
        try:
            open_ = decode_as({HubOpen.TYPE: HubOpen}, r["open"].encode())
        except WireError as e:
            raise MarketError(e.code, e.detail) from None
        known = self.channels.get(open_.channel.hex())
        if known is not None:
            if known.role != "receiver" or known.terms.open != open_:
                raise MarketError("duplicate_channel", "that channel id is taken")
            return self.view(known)                 # the sender did not get our answer: say it again
        if open_.receiver != self.m.key:
            raise MarketError("wrong_receiver", "the channel does not pay us")
        if not open_.signature_ok():
            raise MarketError("bad_signature", "hub_open is not signed by its sender")
        if r["fee"] < self.m.fee:
            raise MarketError("fee_too_low", f"fee {r['fee']} < {self.m.fee}")
        try:
            terms = HubTerms(open_, bytes.fromhex(r["sender_pk"]), self.m.wallet.pubkey, r["fee"])
            tx = Transaction.parse(bytes.fromhex(r["funding_tx"]))
        except (ValueError, DecodeError, ChannelError) as e:
            raise MarketError("bad_field", str(e)) from None
        if not funding_ok(terms, tx):
            raise MarketError("bad_funding", "funding_tx is not the funding hub_open names")
        if self.m.chain.index.confirmed(tx.txid_hex) is None:
            raise MarketError("unconfirmed", "the funding is not on the chain yet")
        if self.m.chain.index.spender(open_.funding) is not None:
            raise MarketError("bad_funding", "the funding is spent")
        if close_by(terms) <= self.m.chain.index.height() + 2 * CLOSE_WITHIN:
            raise MarketError("refund_too_soon", f"refund height {open_.refund_height} leaves no time for an HTLC")
        rec = {"kind": "accept", "open": r["open"], "sender_pk": r["sender_pk"], "fee": r["fee"],
               "url": r["url"].rstrip("/")}
        self._journal(rec)
        return self.view(self._receiver(rec))

    # -- paying (the payer) and being paid (the payee) -----------------------------------------------------------

    def invoice(self, amount: int, hold: bool = False) -> dict:
        """Draw a preimage for a payment of ``amount`` to us. A *hold* invoice is fulfilled only on
        :meth:`release` (the payee decides when it is paid, as Lightning's hold invoices)."""
        preimage = secrets.token_bytes(32)
        self._journal({"kind": "invoice", "preimage": preimage.hex(), "amount": amount, "hold": hold})
        return self._invoice(preimage, amount, hold)

    def _invoice(self, preimage: bytes, amount: int, hold: bool) -> dict:
        self.invoices[sha256(preimage)] = {"preimage": preimage, "amount": amount, "hold": hold}
        return {"hash": sha256(preimage).hex(), "key": self.m.key.hex(), "amount": amount, "hold": hold}

    def release(self, hash: bytes) -> dict:
        """Fulfill the pending HTLC that pays our hold invoice ``hash``."""
        inv = self.invoices.get(hash)
        if inv is None or not inv["hold"]:
            raise MarketError("unknown_invoice", f"no hold invoice {hash.hex()}")
        height = self.m.chain.index.height()
        c = next((c for c in self.channels.values() if c.role == "receiver" and hash in self.end(c).htlcs), None)
        if c is None or height >= self.end(c).htlcs[hash].expiry:
            raise MarketError("not_pending", "no unexpired HTLC pays that invoice")
        self._journal({"kind": "release", "hash": hash.hex(), "height": height})
        self._release(hash, height)
        return {"hash": hash.hex(), "released": True}

    def _release(self, hash: bytes, height: int) -> None:
        c = next(c for c in self.channels.values() if c.role == "receiver" and hash in self.end(c).htlcs)
        self._send(c, self.end(c).fulfill(self.invoices[hash]["preimage"], height))

    def pay(self, hub_url: str, to: bytes, hash: bytes, amount: int, expiry_blocks: int = DEFAULT_EXPIRY) -> dict:
        """Add an HTLC for ``to``'s invoice ``hash`` on our open channel to the hub at ``hub_url``."""
        if self.hub is not None:
            raise MarketError("is_hub", "a hub routes payments; it does not make them")
        c = next((c for c in self.channels.values()
                  if c.role == "sender" and c.url == hub_url.rstrip("/") and c.state == OPEN), None)
        if c is None:
            raise MarketError("no_channel", f"no open hub channel of ours to {hub_url}")
        height = self.m.chain.index.height()
        why = self.sending[c.id].refusal(hash, amount, height + expiry_blocks, height)
        if why is not None:
            raise MarketError(why, f"an HTLC of {amount} expiring at {height + expiry_blocks} cannot be added")
        r = {"kind": "pay", "channel": c.id, "hash": hash.hex(), "amount": amount, "to": to.hex(),
             "expiry": height + expiry_blocks, "height": height}
        self._journal(r)
        return self._pay(r)

    def _pay(self, r: dict) -> dict:
        c, hash = self.channels[r["channel"]], bytes.fromhex(r["hash"])
        state = self.sending[c.id].add(hash, r["amount"], r["expiry"], bytes.fromhex(r["to"]), r["height"])
        self.payments[hash] = {"hash": r["hash"], "channel": c.id, "amount": r["amount"], "to": r["to"],
                               "expiry": r["expiry"], "state": "pending", "reason": ""}
        self._send(c, state)
        return self.payments[hash]

    # -- messages ---------------------------------------------------------------------------------------------------

    def on_message(self, data: bytes) -> dict:
        """A hub_chain_state, htlc_fulfill or htlc_fail from the other end of one of our channels."""
        height = self.m.chain.index.height()
        self._on_message(data, height)          # raises, counted, if refused: nothing to journal
        self._journal({"kind": "msg", "data": bytes(data).decode(), "height": height})
        return {"ok": True}

    def _on_message(self, data: bytes, height: int) -> None:
        try:
            kind, _ = message_type(data)
            if kind == HubChainState.TYPE:
                msg = HubChainState.decode(data)
            elif kind in (HtlcFulfill.TYPE, HtlcFail.TYPE):
                msg = decode_as({HtlcFulfill.TYPE: HtlcFulfill, HtlcFail.TYPE: HtlcFail}, data)
            else:
                raise WireError("malformed", f"unexpected message type {kind!r}")
        except WireError as e:
            self._refuse(e.code, e.detail)
        c = self.channels.get(msg.channel.hex())
        want = "receiver" if kind == HubChainState.TYPE else "sender"
        if c is None or c.role != want:
            self._refuse("unknown_channel", f"no channel {msg.channel.hex()} where we are the {want}")
        if c.state not in (OPEN, CLOSING):
            self._refuse("closed", f"channel {c.id} is {c.state}")
        end = self.end(c)
        before, seq = Counter(end.rejected), end.seq
        if kind == HubChainState.TYPE:
            try:
                state_data, close_sig = check_chain_state(c.terms, data, self.m.wallet)
            except WireError as e:
                self._refuse(e.code, e.detail)
            out = self._receive(c, end, state_data, height)
            if end.seq == seq:
                self._refuse(next(iter(end.rejected - before), "refused"), "hub_chain_state refused")
            c.close_sig = close_sig
        else:
            out = self._receive(c, end, data, height)
            if not out:
                self._refuse(next(iter(end.rejected - before), "refused"), f"{kind} refused")
            p = self.payments.get(msg.hash)
            if p is not None:
                p["state"], p["reason"] = ("settled", "") if kind == HtlcFulfill.TYPE else ("failed", msg.reason)
        for data_out in out:
            self._send_any(data_out)

    def _receive(self, c: _HubChannel, end, data: bytes, height: int) -> list:
        """Feed a message to the channel's end (the hub's routing, or ours); the messages it makes."""
        if self.hub is not None:
            return [s.data for s in self.hub.receive(data, height)]
        if c.role == "sender":
            return end.receive(data, height)
        out = []
        for h in end.receive(data, height):                  # the HTLCs a state adds: our invoices?
            inv = self.invoices.get(h.hash)
            if inv is not None and inv["hold"] and h.amount >= inv["amount"]:
                self.counters["held"] += 1                    # until release(), or its expiry cancels it
            elif inv is not None and h.amount >= inv["amount"] and height < h.expiry:
                out.append(end.fulfill(inv["preimage"], height))
                self.counters["fulfilled"] += 1
            else:
                out.append(end.fail(h.hash, UNKNOWN_INVOICE))
                self.counters["failed_unknown_invoice"] += 1
        return out

    def _refuse(self, code: str, detail: str):
        self.rejected[code] += 1
        raise MarketError(code, detail)

    def _send_any(self, data: bytes) -> None:
        """A message hub.py made, to the other end of the channel it names."""
        msg = decode_as({HubState.TYPE: HubState, HtlcFulfill.TYPE: HtlcFulfill, HtlcFail.TYPE: HtlcFail}, data)
        self._send(self.channels[msg.channel.hex()], data)

    def _send(self, c: _HubChannel, data: bytes) -> None:
        if c.role == "sender":                              # a state goes with our signature of its close
            data = chain_state(c.terms, data, self.m.wallet)
        self.outbox.setdefault(c.url, []).append(data)

    async def _flush(self, url: str) -> None:
        box = self.outbox.get(url, [])
        while box:
            try:
                await self.m.post(f"{url}/hub_msg", box[0])
            except MarketError as e:
                if e.code not in DROP:          # not there, or not ready for it (a chain view behind ours)
                    self.counters[f"hub_retry_{e.code}"] += 1
                    return
                self.counters[f"hub_refused_{e.code}"] += 1
            box.pop(0)
            self._journal({"kind": "delivered", "url": url})

    # -- expiry and the chain ----------------------------------------------------------------------------------------

    def _expire(self, height: int) -> None:
        if self.hub is not None:
            out = [s.data for s in self.hub.tick(height)]
        else:
            out = []
            for cid, end in self.sending.items():
                for h in [h for h in end.htlcs.values() if height >= h.expiry]:
                    p = self.payments.get(h.hash)
                    if p is not None:
                        p["state"], p["reason"] = "failed", "expired"
                out += end.expire(height)
        for data in out:
            self._send_any(data)

    def _expiring(self, height: int) -> bool:
        return any(height >= h.expiry for c in self.channels.values() if c.role == "sender"
                   for h in self.end(c).htlcs.values())

    def close(self, channel: str) -> dict:
        """The receiver closes now with the latest state."""
        c = self._get(channel)
        if c.role != "receiver":
            raise MarketError("not_receiver", "only the receiver closes a hub channel (the sender refunds)")
        self._journal({"kind": "close", "channel": c.id})
        c.asked_close = True
        return self.view(c)

    def _close_tx(self, c: _HubChannel):
        latest = self.end(c).latest
        if latest is None or c.close_sig is None:
            return None
        return closed(c.terms, latest, c.close_sig, sign_close(c.terms, latest, self.m.wallet))

    async def _chain_once(self, what: str, height: int, send) -> None:
        """A chain transaction, sent at most once per PKT block."""
        if self.chain_sent.get(what) == height:
            return
        self.chain_sent[what] = height
        try:
            await send()
            self.counters[f"{what.split(':')[0]}_sent"] += 1
        except (ChainClientError, ChannelError) as e:
            self.counters[f"{what.split(':')[0]}_refused"] += 1
            log.info("hub channel %s: %s", what, e)

    async def _chain_tick(self, c: _HubChannel, height: int) -> None:
        index = self.m.chain.index
        spender = index.spender(c.terms.open.funding)
        if spender is None:
            if c.role == "sender" and height >= c.terms.open.refund_height:
                await self._chain_once(f"refund:{c.id}", height,
                                       lambda: self.m.chain.send(refund_tx(c.terms, self.m.wallet)))
            elif c.role == "receiver" and c.state in (OPEN, CLOSING):
                end = self.end(c)
                if c.asked_close or end.due(height) or height >= close_by(c.terms):
                    tx = self._close_tx(c)
                    if tx is None:
                        c.state = CLOSED            # nothing to close for: the sender refunds
                    else:
                        c.state = CLOSING
                        await self._chain_once(f"close:{c.id}", height, lambda: self.m.chain.send(tx))
            return
        refunded = c.role == "sender" and spender == refund_tx(c.terms, self.m.wallet).txid_hex
        c.state, c.close_txid = (REFUNDED if refunded else CLOSED), spender
        # the HTLC outputs of the close: ours to claim with a preimage we know, or to take back after the expiry
        for h in index.state().values():
            if not h.outpoint.startswith(f"{spender}:") or h.state != "open":
                continue
            if c.role == "receiver" and h.pay_to == self.m.wallet.pubkey and height < h.refund_height:
                preimage = self._preimage(c, h.hash)
                if preimage is not None:
                    await self._chain_once(f"claim:{h.outpoint}", height,
                                           lambda: self.m.chain.claim(h.outpoint, self.m.wallet, preimage,
                                                                      self.m.fee))
            elif c.role == "sender" and h.refund_to == self.m.wallet.pubkey and height >= h.refund_height:
                await self._chain_once(f"reclaim:{h.outpoint}", height,
                                       lambda: self.m.chain.refund(h.outpoint, self.m.wallet, self.m.fee))
        if self.hub is not None and c.role == "sender":       # our payee claimed on chain: we learn the preimage
            for h in index.state().values():
                if h.outpoint.startswith(f"{spender}:") and h.preimage is not None:
                    for data in [s.data for s in self.hub.learned(h.preimage, height)]:
                        self._send_any(data)

    def _preimage(self, c: _HubChannel, hash: bytes) -> bytes | None:
        end = self.end(c)
        return end.preimages.get(hash) or (self.invoices.get(hash) or {}).get("preimage")

    async def tick(self) -> None:
        height = self.m.chain.index.height()
        if self._expiring(height):
            self._journal({"kind": "expire", "height": height})
            self._expire(height)
        for c in list(self.channels.values()):
            if c.state == OPENING:
                await self._opening(c)
            if c.state not in (OPENING, REFUSED):
                await self._chain_tick(c, height)
        for url in list(self.outbox):
            await self._flush(url)

    # -- views ------------------------------------------------------------------------------------------------------

    def _get(self, channel: str) -> _HubChannel:
        c = self.channels.get(channel)
        if c is None:
            raise MarketError("unknown_channel", f"no hub channel {channel}")
        return c

    def status(self, channel: str) -> dict:
        return self.view(self._get(channel))

    def view(self, c: _HubChannel) -> dict:
        end, o = self.end(c), c.terms.open
        return {"channel": c.id, "role": c.role, "peer": c.url, "hub": self.hub is not None, "state": c.state,
                "capacity": o.capacity, "fee": c.terms.fee, "funding": o.funding, "refund_height": o.refund_height,
                "seq": end.seq, "paid": end.paid, "pending": len(end.htlcs), "pending_amount": end.pending,
                "close_txid": c.close_txid, "rejected": dict(end.rejected)}

    def list(self) -> list[dict]:
        return [self.view(c) for c in self.channels.values()]

    def info(self) -> dict:
        return {"hub": self.hub is not None, "fee": self.hub.fee if self.hub else 0,
                "margin": self.hub.margin if self.hub else 0, "key": self.m.key.hex(),
                "wallet_key": self.m.wallet.pubkey.hex(), "pkt_height": self.m.chain.index.height(),
                "payments": [dict(p) for p in self.payments.values()], "counters": dict(self.counters),
                "rejected": dict(self.rejected),
                "hub_rejected": dict(self.hub.rejected) if self.hub else {},
                "outbox": {u: len(b) for u, b in self.outbox.items()}}
