"""Blocks: the 80-byte header, the PacketCryptProof, the transactions, merkle root, BIP34 height and genesis.

  header = version i32 | prev block id[32] | merkle root[32] | time u32 | bits u32 | nonce u32  (80 bytes)
  block  = header | PacketCryptProof (TLV stream, pkt-reference.md §5.5) | varint n_tx | transactions
  id     = double SHA-256 of the header (internal order; displayed reversed)

The header's bits are the PacketCrypt block target; the SHA-256 of the header is not a proof of work in PKT.
A block without a proof (only genesis) carries the TLV end marker alone (00 00) where the proof would be: pktd's
genesis is hard-coded, so this is pktlab's encoding, and validation rejects any other block without a proof.
The coinbase's first input script starts with the block height as a minimal CScriptNum push (BIP34), and one of its
outputs carries the PacketCrypt commitment (OP_RETURN PUSH48 <commitment>, §5.5).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

from .packetcrypt.ann_tree import CommitmentError, CoinbaseCommitment, commitment_from_scripts
from .packetcrypt.block import PacketCryptProof
from .params import ChainParams
from .script import encode_num, push_data, push_int
from .tx import NULL_OUTPOINT, Transaction, TxIn, TxOut
from .wire import DecodeError, Reader, hash_hex, sha256d, varint

HEADER_SIZE = 80
NO_PROOF = b"\x00\x00"          # TLV type 0 (end), length 0
MAX_BLOCK_BYTES = 4_000_000     # decoder bound; consensus uses ChainParams.max_block_size
_HEADER = struct.Struct("<i32s32sIII")


@dataclass(frozen=True)
class BlockHeader:
    version: int
    prev_hash: bytes
    merkle_root: bytes
    time: int
    bits: int
    nonce: int = 0

    def serialize(self) -> bytes:
        return _HEADER.pack(self.version, self.prev_hash, self.merkle_root, self.time, self.bits, self.nonce)

    @classmethod
    def parse(cls, data: bytes) -> "BlockHeader":
        if len(data) != HEADER_SIZE:
            raise DecodeError(f"a block header is {HEADER_SIZE} bytes, got {len(data)}")
        return cls(*_HEADER.unpack(data))

    @cached_property
    def hash(self) -> bytes:
        return sha256d(self.serialize())

    @property
    def hash_hex(self) -> str:
        return hash_hex(self.hash)


def merkle_root(txids: list[bytes]) -> bytes:
    """Bitcoin's merkle root: pairs hashed with double SHA-256, an odd last node paired with itself."""
    if not txids:
        return bytes(32)
    layer = list(txids)
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        layer = [sha256d(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[Transaction, ...]
    proof: PacketCryptProof | None = None

    def __post_init__(self):
        object.__setattr__(self, "txs", tuple(self.txs))

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def hash_hex(self) -> str:
        return self.header.hash_hex

    def serialize(self) -> bytes:
        proof = self.proof.encode() if self.proof is not None else NO_PROOF
        return self.header.serialize() + proof + varint(len(self.txs)) + b"".join(t.raw for t in self.txs)

    @cached_property
    def raw(self) -> bytes:
        return self.serialize()

    @classmethod
    def parse(cls, data: bytes) -> "Block":
        """Decode one block; any malformation (header, proof, transactions, trailing bytes) is a DecodeError."""
        if len(data) > MAX_BLOCK_BYTES:
            raise DecodeError(f"a block of {len(data)} bytes exceeds {MAX_BLOCK_BYTES}")
        r = Reader(data, "block")
        header = BlockHeader.parse(r.read(HEADER_SIZE))
        proof = None
        if r.data[r.pos:r.pos + 2] == NO_PROOF:
            r.read(2)
        else:
            try:
                proof, used = PacketCryptProof.decode(r.data[r.pos:])
            except (ValueError, IndexError) as e:      # PcpFormatError and announcement-size errors
                raise DecodeError(f"bad PacketCryptProof: {e}") from None
            r.read(used)
        n = r.count(10, "transaction")
        txs = tuple(Transaction.read(r) for _ in range(n))
        r.end()
        return cls(header, txs, proof)

    def computed_merkle_root(self) -> bytes:
        return merkle_root([t.txid for t in self.txs])

    def commitment(self) -> CoinbaseCommitment:
        """The PacketCrypt commitment in the coinbase (CommitmentError if there is none)."""
        if not self.txs:
            raise CommitmentError("block has no coinbase")
        return commitment_from_scripts(o.script_pubkey for o in self.txs[0].outputs)


# --- BIP34 ------------------------------------------------------------------------------------------------------

def height_push(height: int) -> bytes:
    """The coinbase script prefix for a height: a minimal CScriptNum push (OP_0 for 0, OP_1..OP_16 as BIP34)."""
    return push_int(height) if height <= 16 else push_data(encode_num(height))


def coinbase_height(tx: Transaction) -> int | None:
    """The height a coinbase commits to, read as btcd ExtractCoinbaseHeight does: OP_0 / OP_1..OP_16, else the
    first byte is a length and up to 8 following bytes are a little-endian number. None when unreadable."""
    if not tx.inputs or not tx.inputs[0].script_sig:
        return None
    script = tx.inputs[0].script_sig
    op = script[0]
    if op == 0:
        return 0
    if 0x51 <= op <= 0x60:
        return op - 0x50
    if len(script) - 1 < op:
        return None
    return int.from_bytes(script[1:1 + min(op, 8)], "little")


def coinbase_tx(height: int, outputs: list[TxOut], extra: bytes = b"") -> Transaction:
    """A coinbase: one null input whose script is the BIP34 height push, then `extra` (padded to >= 2 bytes)."""
    script = height_push(height) + push_data(extra) if extra else height_push(height)
    if len(script) < 2:
        script += bytes([0])                   # consensus wants 2..100 bytes of coinbase script
    return Transaction((TxIn(NULL_OUTPOINT, script),), tuple(outputs))


# --- genesis ------------------------------------------------------------------------------------------------------

GENESIS_MESSAGE = b"pktlab genesis: a regtest-like PKT chain of its own"


def genesis_block(params: ChainParams) -> Block:
    """This chain's genesis: a coinbase paying the initial steward one steward payout (never spendable: genesis
    outputs are not in the UTXO set, as in Bitcoin), no PacketCrypt proof, the starting difficulty."""
    cb = coinbase_tx(0, [TxOut(params.steward_payout(0), params.initial_steward_script)], GENESIS_MESSAGE)
    header = BlockHeader(1, bytes(32), merkle_root([cb.txid]), params.genesis_time, params.starting_bits, 0)
    return Block(header, (cb,), None)
