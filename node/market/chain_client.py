"""The market's way to the real PKT chain: a chain node's RPC (node/chain/rpc.py) over HTTP, keeping an HtlcIndex
in step with the node's best chain and making the swap's chain transactions (fund, claim, refund an HTLC).

:meth:`ChainClient.sync` reads the node's main-chain block ids (``/hashes``), rewinds the index to the last block
both agree on (a reorg) and reads the blocks after it (``/block_at/H``), each checked to be the block it claims
to be and to extend the index's tip; a block that does not fits is left for the next sync. The transactions are
signed with node/chain/wallet.py over the coins the node reports (``/coins``) and sent with ``/sendtx``:

  fund    pays ``amount`` to the HTLC script (output 0), the change back to the payer's P2PKH
  claim   spends the HTLC by its claim path (``<sig> <preimage> OP_1``) to the claimer's P2PKH, minus the fee
  refund  spends it by its refund path (``<sig> OP_0``, lock time = the refund height, a non-final sequence)

Every failure is a :class:`ChainClientError` naming the request and the node's answer.
"""
from __future__ import annotations

from types import SimpleNamespace

import aiohttp

from node.chain import script as S
from node.chain.blocks import Block
from node.chain.coins import Coin
from node.chain.keys import Key
from node.chain.tx import OutPoint, TxOut
from node.chain.wallet import Wallet, WalletError, htlc_redeem, htlc_refund, spend_tx
from node.chain.wire import DecodeError, hash_from_hex

from .htlc_index import HtlcIndex

HASHES_PER_ASK = 2000           # the RPC's most per /hashes
DEFAULT_FEE = 10_000            # atomic units (2^30 per PKT)


class ChainClientError(RuntimeError):
    """A chain request that failed, naming it and why."""


class ChainClient:
    """``url`` is the node's RPC (``http://[addr]:64765``) or ``unix:/path/chain.sock``."""

    def __init__(self, url: str, params, timeout: float = 10.0):
        self.url, self.params = url, params
        self.index = HtlcIndex()
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> tuple[aiohttp.ClientSession, str]:
        if self._session is None:
            connector = aiohttp.UnixConnector(self.url[5:]) if self.url.startswith("unix:") else None
            self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session, "http://localhost" if self.url.startswith("unix:") else self.url.rstrip("/")

    async def _ask(self, path: str, body: dict | None = None) -> dict:
        session, base = self._http()
        try:
            if body is None:
                r = await session.get(base + path)
            else:
                r = await session.post(base + path, json=body)
            async with r:
                answer = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ChainClientError(f"chain {path}: {type(e).__name__}: {e}") from None
        if r.status != 200:
            raise ChainClientError(f"chain {path}: HTTP {r.status} {answer.get('error')} {answer.get('reason') or ''}"
                                   f" {answer.get('detail', '')}".rstrip())
        return answer

    # -- the index ----------------------------------------------------------------------------------------------

    async def sync(self) -> int:
        """Bring the index to the node's best chain; returns the index's height."""
        tip = (await self._ask("/tip"))["height"]
        theirs: list[bytes] = []
        while len(theirs) <= tip:
            got = (await self._ask(f"/hashes?from={len(theirs)}&count={HASHES_PER_ASK}"))["hashes"]
            if not got:
                break
            theirs.extend(hash_from_hex(h) for h in got)
        ours = self.index.hashes
        common = 0
        while common < min(len(ours), len(theirs)) and ours[common] == theirs[common]:
            common += 1
        if common < len(ours):
            self.index.rewind(common - 1)
        for height in range(common, len(theirs)):
            answer = await self._ask(f"/block_at/{height}")
            try:
                block = Block.parse(bytes.fromhex(answer["hex"]))
            except (DecodeError, ValueError, KeyError) as e:
                raise ChainClientError(f"chain /block_at/{height}: not a block: {e}") from None
            if block.hash != theirs[height] or (height and block.header.prev_hash != self.index.hashes[-1]):
                break                       # the node moved on meanwhile: the next sync takes it up
            self.index.add_block(height, block)
        return self.index.height()

    # -- transactions ---------------------------------------------------------------------------------------------

    async def coins(self, key: Key) -> SimpleNamespace:
        """The key's coins as the node reports them, in the shape Wallet.send reads."""
        answer = await self._ask(f"/coins?address={key.address}")
        coins = [(OutPoint(hash_from_hex(c["txid"]), c["index"]),
                  Coin(c["value"], bytes.fromhex(c["script"]), c["height"], c["coinbase"], c["steward"]))
                 for c in answer["coins"]]
        return SimpleNamespace(height=answer["height"], iter_coins=lambda: iter(coins),
                               mempool=SimpleNamespace(spenders=set()), balance=answer["balance"])

    async def balance(self, key: Key) -> dict:
        return (await self._ask(f"/coins?address={key.address}"))["balance"]

    async def send(self, tx) -> str:
        return (await self._ask("/sendtx", {"tx": tx.raw.hex()}))["txid"]

    async def fund(self, key: Key, amount: int, hash: bytes, pay_to: bytes, refund_to: bytes, refund_height: int,
                   fee: int = DEFAULT_FEE) -> str:
        """Fund an HTLC from ``key``'s coins; returns its outpoint."""
        try:
            script = S.htlc(hash, pay_to, refund_to, refund_height)
            tx = Wallet(self.params, [key]).send(await self.coins(key), script, amount, fee)
        except (WalletError, ValueError) as e:
            raise ChainClientError(f"fund HTLC: {e}") from None
        txid = await self.send(tx)
        return f"{txid}:0"

    def _spend(self, outpoint: str, key: Key, fee: int, lock_time: int = 0):
        htlc, script = self.index.htlc(outpoint), self.index.script(outpoint)
        if htlc is None or script is None:
            raise ChainClientError(f"no HTLC {outpoint} on the best chain")
        if htlc.amount <= fee:
            raise ChainClientError(f"HTLC {outpoint} holds {htlc.amount}, not more than the fee {fee}")
        txid, index = outpoint.split(":")
        tx = spend_tx([OutPoint(hash_from_hex(txid), int(index))], [TxOut(htlc.amount - fee, key.p2pkh_script)],
                      lock_time=lock_time)
        return htlc, script, tx

    async def claim(self, outpoint: str, key: Key, preimage: bytes, fee: int = DEFAULT_FEE) -> str:
        _, script, tx = self._spend(outpoint, key, fee)
        return await self.send(htlc_redeem(tx, 0, script, key, preimage))

    async def refund(self, outpoint: str, key: Key, fee: int = DEFAULT_FEE) -> str:
        htlc = self.index.htlc(outpoint)
        _, script, tx = self._spend(outpoint, key, fee, lock_time=htlc.refund_height if htlc else 0)
        return await self.send(htlc_refund(tx, 0, script, key))
