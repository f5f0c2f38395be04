"""Transactions in Bitcoin's wire format (pktd `wire/msgtx.go`) and the legacy signature hash.

  tx     = version i32 | varint n_in | inputs | varint n_out | outputs | lock_time u32
  input  = prev txid[32] (internal order) | prev index u32 | varint len | scriptSig | sequence u32
  output = value i64 (atomic units, 2^30 per PKT) | varint len | scriptPubKey
  txid   = double SHA-256 of that serialization (displayed reversed)

This chain has no segregated witness: the witness marker (zero inputs followed by flag 0x01) is a DecodeError
(pktd has segwit, but nothing on a pktlab chain needs it; see README "PKT chain"). Signatures commit to the
legacy SIGHASH digest (ALL, NONE, SINGLE, ANYONECANPAY as in Bitcoin's SignatureHash).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

from .script import find_and_delete
from .wire import DecodeError, Reader, hash_hex, sha256d, var_bytes, varint

SIGHASH_ALL, SIGHASH_NONE, SIGHASH_SINGLE, SIGHASH_ANYONECANPAY = 1, 2, 3, 0x80
SEQUENCE_FINAL = 0xFFFFFFFF
MAX_TX_SIZE = 1_000_000
MIN_INPUT_SIZE = 41               # 32 + 4 + 1 (empty script) + 4
MIN_OUTPUT_SIZE = 9               # 8 + 1


@dataclass(frozen=True)
class OutPoint:
    txid: bytes          # internal byte order
    index: int

    def serialize(self) -> bytes:
        return bytes(self.txid) + struct.pack("<I", self.index)

    @property
    def is_null(self) -> bool:
        return self.txid == bytes(32) and self.index == 0xFFFFFFFF

    def __str__(self) -> str:
        return f"{hash_hex(self.txid)}:{self.index}"


NULL_OUTPOINT = OutPoint(bytes(32), 0xFFFFFFFF)


@dataclass(frozen=True)
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = SEQUENCE_FINAL

    def serialize(self, script: bytes | None = None, sequence: int | None = None) -> bytes:
        return (self.prevout.serialize() + var_bytes(self.script_sig if script is None else script)
                + struct.pack("<I", self.sequence if sequence is None else sequence))


@dataclass(frozen=True)
class TxOut:
    value: int           # atomic units
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return struct.pack("<q", self.value) + var_bytes(self.script_pubkey)


@dataclass(frozen=True)
class Transaction:
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    version: int = 1
    lock_time: int = 0

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))

    def serialize(self) -> bytes:
        return (struct.pack("<i", self.version) + varint(len(self.inputs)) + b"".join(i.serialize() for i in
                self.inputs) + varint(len(self.outputs)) + b"".join(o.serialize() for o in self.outputs)
                + struct.pack("<I", self.lock_time))

    @cached_property
    def raw(self) -> bytes:
        return self.serialize()

    @cached_property
    def txid(self) -> bytes:
        return sha256d(self.raw)

    @property
    def txid_hex(self) -> str:
        return hash_hex(self.txid)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].prevout.is_null

    @classmethod
    def read(cls, r: Reader) -> "Transaction":
        version = r.i32()
        n_in = r.count(MIN_INPUT_SIZE, "input")
        if n_in == 0 and r.remaining and r.data[r.pos] == 0x01:
            raise DecodeError("witness-serialized transactions are not supported on this chain")
        inputs = []
        for _ in range(n_in):
            prev = OutPoint(r.read(32), r.u32())
            inputs.append(TxIn(prev, r.var_bytes(MAX_TX_SIZE), r.u32()))
        n_out = r.count(MIN_OUTPUT_SIZE, "output")
        outputs = [TxOut(r.i64(), r.var_bytes(MAX_TX_SIZE)) for _ in range(n_out)]
        return cls(tuple(inputs), tuple(outputs), version, r.u32())

    @classmethod
    def parse(cls, data: bytes) -> "Transaction":
        """Decode exactly one transaction; DecodeError on anything malformed or trailing."""
        r = Reader(data, "transaction")
        tx = cls.read(r)
        r.end()
        return tx

    def signature_hash(self, index: int, script_code: bytes, hash_type: int = SIGHASH_ALL,
                       signature: bytes = b"") -> bytes:
        """Bitcoin's legacy SignatureHash (as btcd calcSignatureHash): the double SHA-256 of a modified copy of
        the transaction with `script_code` (the signature's pushes removed) in input `index`."""
        if not 0 <= index < len(self.inputs):
            raise ValueError(f"input {index} does not exist")
        base = hash_type & 0x1F
        if base == SIGHASH_SINGLE and index >= len(self.outputs):
            return (1).to_bytes(32, "little")          # the historic "one" hash
        script_code = find_and_delete(script_code, signature) if signature else bytes(script_code)
        if hash_type & SIGHASH_ANYONECANPAY:
            ins = [self.inputs[index].serialize(script_code)]
        else:
            ins = []
            for i, txin in enumerate(self.inputs):
                if i == index:
                    ins.append(txin.serialize(script_code))
                elif base in (SIGHASH_NONE, SIGHASH_SINGLE):
                    ins.append(txin.serialize(b"", 0))
                else:
                    ins.append(txin.serialize(b""))
        if base == SIGHASH_NONE:
            outs = []
        elif base == SIGHASH_SINGLE:
            outs = [TxOut(-1, b"").serialize()] * index + [self.outputs[index].serialize()]
        else:
            outs = [o.serialize() for o in self.outputs]
        data = (struct.pack("<i", self.version) + varint(len(ins)) + b"".join(ins) + varint(len(outs))
                + b"".join(outs) + struct.pack("<I", self.lock_time) + struct.pack("<I", hash_type))
        return sha256d(data)
