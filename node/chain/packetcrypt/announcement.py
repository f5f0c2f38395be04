"""PacketCrypt announcements: the 1024-byte format, version-1 mining and validation (pkt-reference.md §5.2-§5.3).

An announcement proves memory-hard work tied to a recent block. The miner commits to a table of 8192 RandHash
items (merkle root in the announcement), then searches soft nonces over a second table derived from that root;
the winning state encrypts the merkle branch of the last item used, so the branch cannot be precomputed.

Fast mode (testbeds only): the version byte is FAST_VERSION_FLAG | depth and the tables hold 2^depth items
(depth 1..12) instead of 8192. Everything else is the same algorithm. Faithful (mainnet) validation rejects it
with Reason.FAST_MODE_NOT_ALLOWED; validation accepts it only when asked to (`allow_fast=True`).

Version 0 (legacy, PcP v1 only) is supported too: one MkItem table (hash chains + memocycle) serves both the
merkle tree and the search, RandHash runs inside each update, and the item-4 prefix is stored in clear.
"""
from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass, field, replace

from . import cryptocycle
from .difficulty import hash_meets_target, soft_nonce_max
from .hashing import expand, h32, h64
from .randhash import Program, RandHashError, build_table, create_program, mkitem2, randhash

ANN_SIZE = 1024
HEADER_SIZE = 88
MERKLE_DEPTH = 13
TABLE_ITEMS = 1 << MERKLE_DEPTH
BRANCH_OFFSET, ROOT_OFFSET, PREFIX_OFFSET = 88, 920, 984
PREFIX_SIZE = 40
MIN_V1_PARENT_HEIGHT = 103869          # mainnet: version-1 announcements only from this parent height on
FAST_VERSION_FLAG = 0x80
MAX_FAST_DEPTH = 12
_HEADER = struct.Struct("<B3sIIIII32s32s")


class Reason(enum.Enum):
    """Why an announcement was rejected (pktd Validate_checkAnn_* names, plus our own parse/fast-mode reasons)."""
    BAD_SIZE = "BAD_SIZE"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    FAST_MODE_NOT_ALLOWED = "FAST_MODE_NOT_ALLOWED"
    ANN_VERSION_NOT_ALLOWED = "ANN_VERSION_NOT_ALLOWED"
    ANN_VERSION_MISMATCH = "ANN_VERSION_MISMATCH"
    SOFT_NONCE_HIGH = "SOFT_NONCE_HIGH"
    BAD_PROGRAM = "BAD_PROGRAM"
    BAD_PROGRAM_EXEC = "BAD_PROGRAM_EXEC"
    INVAL = "INVAL"                    # v0: the per-update RandHash program failed
    INVAL_ITEM4 = "INVAL_ITEM4"
    BAD_PROGRAM0 = "BAD_PROGRAM0"
    BAD_PROGRAM0_EXEC = "BAD_PROGRAM0_EXEC"
    INVAL_MERKLE = "INVAL_MERKLE"
    INSUF_POW = "INSUF_POW"


class AnnValidationError(ValueError):
    """An invalid announcement; `reason` says why, `work_hash` is set when the failure was INSUF_POW."""

    def __init__(self, reason: Reason, detail: str = "", work_hash: bytes | None = None):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.work_hash = work_hash


def fast_version(depth: int) -> int:
    if not 1 <= depth <= MAX_FAST_DEPTH:
        raise ValueError(f"fast-mode table depth must be 1..{MAX_FAST_DEPTH}")
    return FAST_VERSION_FLAG | depth


def table_depth(version: int) -> int | None:
    """Merkle depth (log2 of the table size) for a mining version: 13 for v1, the depth for fast mode."""
    if version in (0, 1):
        return MERKLE_DEPTH
    if version & FAST_VERSION_FLAG and 1 <= version & 0x7F <= MAX_FAST_DEPTH:
        return version & 0x7F
    return None


@dataclass
class Announcement:
    """The fields of a 1024-byte announcement (all little-endian on the wire)."""
    version: int = 1
    soft_nonce: int = 0
    hard_nonce: int = 0
    work_bits: int = 0
    parent_block_height: int = 0
    content_type: int = 0
    content_length: int = 0
    content_hash: bytes = bytes(32)
    signing_key: bytes = bytes(32)
    merkle_branch: bytes = field(default=bytes(MERKLE_DEPTH * 64), repr=False)   # encrypted in v1
    merkle_root: bytes = field(default=bytes(64), repr=False)
    item4_prefix: bytes = field(default=bytes(PREFIX_SIZE), repr=False)           # encrypted in v1

    @classmethod
    def parse(cls, data: bytes) -> "Announcement":
        if len(data) != ANN_SIZE:
            raise AnnValidationError(Reason.BAD_SIZE, f"an announcement is {ANN_SIZE} bytes, got {len(data)}")
        v, soft, hard, bits, height, ctype, clen, chash, skey = _HEADER.unpack_from(data, 0)
        return cls(v, int.from_bytes(soft, "little"), hard, bits, height, ctype, clen, chash, skey,
                   bytes(data[BRANCH_OFFSET:ROOT_OFFSET]), bytes(data[ROOT_OFFSET:PREFIX_OFFSET]),
                   bytes(data[PREFIX_OFFSET:ANN_SIZE]))

    def header(self, soft_nonce: int | None = None) -> bytes:
        """The 88-byte header; hashing uses soft_nonce=0."""
        sn = self.soft_nonce if soft_nonce is None else soft_nonce
        return _HEADER.pack(self.version, sn.to_bytes(3, "little"), self.hard_nonce, self.work_bits,
                            self.parent_block_height, self.content_type, self.content_length,
                            bytes(self.content_hash), bytes(self.signing_key))

    def pack(self) -> bytes:
        out = self.header() + self.merkle_branch + self.merkle_root + self.item4_prefix
        if len(out) != ANN_SIZE:
            raise ValueError("announcement fields have the wrong sizes")
        return out

    def hash(self) -> bytes:
        """H32(ann): the announcement's identity in pools and in the block's announcement tree."""
        return h32(self.pack())

    @property
    def is_fast(self) -> bool:
        return bool(self.version & FAST_VERSION_FLAG)

    @property
    def has_signing_key(self) -> bool:
        return any(self.signing_key)


def inline_content(content: bytes) -> tuple[int, bytes]:
    """(content_length, content_hash) for content of at most 32 bytes, stored right-padded in content_hash."""
    if len(content) > 32:
        raise ValueError("only content of at most 32 bytes is stored inline")
    return len(content), bytes(content) + bytes(32 - len(content))


# --- hashing steps shared by the miner and the validator -------------------------------------------------------

def ann_hash0(header_no_soft: bytes, parent_block_hash: bytes) -> bytes:
    """H64(header with soft nonce 0 || parent block hash (internal byte order) || 0^32)."""
    if len(parent_block_hash) != 32:
        raise ValueError("parent block hash must be 32 bytes")
    return h64(header_no_soft + bytes(parent_block_hash) + bytes(32))


def merkle_layers(items: list[bytes]) -> list[list[bytes]]:
    """All layers of the 64-byte merkle tree over the item table, leaves H64(item) first, root last."""
    layer = [hashlib.blake2b(it, digest_size=64).digest() for it in items]
    layers = [layer]
    while len(layer) > 1:
        layer = [hashlib.blake2b(layer[i] + layer[i + 1], digest_size=64).digest()
                 for i in range(0, len(layer), 2)]
        layers.append(layer)
    return layers


def merkle_branch(layers: list[list[bytes]], item_no: int) -> bytes:
    """The siblings of leaf item_no from the bottom up (depth × 64 bytes)."""
    return b"".join(layer[(item_no >> d) ^ 1] for d, layer in enumerate(layers[:-1]))


def merkle_root_from_branch(leaf: bytes, item_no: int, branch: bytes, depth: int) -> bytes:
    node = leaf
    for d in range(depth):
        sib = branch[d * 64:(d + 1) * 64]
        node = h64(node + sib) if not (item_no >> d) & 1 else h64(sib + node)
    return node


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _encrypt(ann: bytes, state: bytes) -> bytes:
    """Announce_crypt: XOR the merkle branch with state[0:832] and the item-4 prefix with state[832:872]."""
    return (ann[:BRANCH_OFFSET] + _xor(ann[BRANCH_OFFSET:ROOT_OFFSET], state[0:832])
            + ann[ROOT_OFFSET:PREFIX_OFFSET] + _xor(ann[PREFIX_OFFSET:], state[832:872]))


def mk_item_v0(item_no: int, seed32: bytes) -> bytes:
    """Version-0 item (pktd MkItem): a 16-block BLAKE2b-512 hash chain from expand, then 2 memocycles."""
    blocks = [expand(64, seed32, item_no)]
    for _ in range(15):
        blocks.append(h64(blocks[-1]))
    for _ in range(2):
        for i in range(16):
            p = (i - 1) % 16
            j = (i + int.from_bytes(blocks[p][:4], "little") % 15) % 16
            blocks[i] = h64(blocks[p] + blocks[j])
    return b"".join(blocks)


def update_v0(s: bytearray, item: bytes) -> None:
    """Version-0 CryptoCycle update: RandHash (program from the item's last 32 bytes, the item as memory,
    4 cycles) on the state, then the normal update. Raises RandHashError like pktd's failed Update."""
    words = list(struct.unpack("<256I", item)) + [0] * (2048 - 256)
    program = Program(create_program(item[992:1024]).insns, words)       # window 0 = the item itself
    randhash(program, 0, s, cycles=4)
    cryptocycle.update(s, item)


class _SoftNonceHasher:
    """init(annHash1[0:32], softNonce) + 4 updates + final, with the 2048-byte expand done once per seed."""

    def __init__(self, seed32: bytes):
        self._init = cryptocycle.SeededInit(seed32)

    def run(self, soft_nonce: int, get_item, table_size: int, legacy: bool = False) -> tuple[bytearray, int]:
        s = self._init.init(soft_nonce)
        item_no = -1
        update = update_v0 if legacy else cryptocycle.update
        for _ in range(4):
            item_no = cryptocycle.get_item_no(s) % table_size
            update(s, get_item(item_no))
        cryptocycle.final(s)
        return s, item_no


# --- validation ------------------------------------------------------------------------------------------------

def _check_v1_items(ann: Announcement, raw: bytes, hash0: bytes, hasher: _SoftNonceHasher, table_size: int):
    """v1 search replay: soft nonce bound, mined-table items, decryption. Returns (state, item_no, branch)."""
    if ann.soft_nonce > soft_nonce_max(ann.work_bits):
        raise AnnValidationError(Reason.SOFT_NONCE_HIGH, f"soft nonce {ann.soft_nonce}")
    seed = h64(ann.merkle_root + hash0)
    try:
        prog = create_program(seed[:32])
    except RandHashError as e:
        raise AnnValidationError(Reason.BAD_PROGRAM, str(e)) from None

    def mined_item(item_no: int) -> bytes:
        try:
            return mkitem2(item_no, seed[32:], prog)
        except RandHashError as e:
            raise AnnValidationError(Reason.BAD_PROGRAM_EXEC, str(e)) from None

    state, item_no = hasher.run(ann.soft_nonce, mined_item, table_size)
    clear = _encrypt(raw, state)          # XOR is its own inverse
    if any(clear[PREFIX_OFFSET:]):
        raise AnnValidationError(Reason.INVAL_ITEM4, "decrypted item-4 prefix is not zero")
    return state, item_no, clear[BRANCH_OFFSET:ROOT_OFFSET]


def validate(ann_bytes: bytes, parent_block_hash: bytes, *, pcp_version: int = 2,
             min_v1_parent_height: int = MIN_V1_PARENT_HEIGHT, allow_fast: bool = False) -> bytes:
    """pktd announce.CheckAnn (versions 0 and 1, and fast mode); returns the 32-byte work hash.

    `parent_block_hash` is the hash (internal byte order) of the block at the announcement's parent height on
    the validating chain. Raises AnnValidationError naming the reason on any failure.
    """
    ann = Announcement.parse(ann_bytes)
    if ann.is_fast and not allow_fast:
        raise AnnValidationError(Reason.FAST_MODE_NOT_ALLOWED, "fast-mode announcement on a faithful chain")
    if ann.version > 0 and ann.parent_block_height < min_v1_parent_height:
        raise AnnValidationError(Reason.ANN_VERSION_NOT_ALLOWED, f"parent height {ann.parent_block_height}")
    if ann.version == 0 and pcp_version > 1:
        raise AnnValidationError(Reason.ANN_VERSION_MISMATCH, "version 0 announcement in a PcP v2 block")
    depth = table_depth(ann.version)
    if depth is None:
        raise AnnValidationError(Reason.UNSUPPORTED_VERSION, f"announcement version {ann.version}")
    table_size = 1 << depth

    hdr = ann.header(soft_nonce=0)
    hash0 = ann_hash0(hdr, parent_block_hash)
    hash1 = h64(hdr + ann.merkle_root)
    hasher = _SoftNonceHasher(hash1[:32])
    if ann.version == 0:
        try:
            state, item_no = hasher.run(ann.soft_nonce, lambda n: mk_item_v0(n, hash0[:32]), table_size, True)
        except RandHashError as e:
            raise AnnValidationError(Reason.INVAL, str(e)) from None
        item = mk_item_v0(item_no, hash0[:32])
        if item[:PREFIX_SIZE] != ann.item4_prefix:
            raise AnnValidationError(Reason.INVAL_ITEM4, "item-4 prefix differs")
        branch = ann.merkle_branch
    else:
        state, item_no, branch = _check_v1_items(ann, bytes(ann_bytes), hash0, hasher, table_size)
        try:
            prog0 = create_program(hash0[:32])
        except RandHashError as e:
            raise AnnValidationError(Reason.BAD_PROGRAM0, str(e)) from None
        try:
            item = mkitem2(item_no, hash0[32:], prog0)
        except RandHashError as e:
            raise AnnValidationError(Reason.BAD_PROGRAM0_EXEC, str(e)) from None
    if depth < MERKLE_DEPTH and any(branch[depth * 64:]):
        raise AnnValidationError(Reason.INVAL_MERKLE, "unused merkle branch slots are not zero")
    if merkle_root_from_branch(h64(item), item_no, branch, depth) != ann.merkle_root:
        raise AnnValidationError(Reason.INVAL_MERKLE, "merkle branch does not lead to the root")
    work_hash = bytes(state[:32])
    if not hash_meets_target(work_hash, ann.work_bits):
        raise AnnValidationError(Reason.INSUF_POW, f"target {ann.work_bits:08x}", work_hash)
    return work_hash


def is_valid(ann_bytes: bytes, parent_block_hash: bytes, **kwargs) -> bool:
    try:
        validate(ann_bytes, parent_block_hash, **kwargs)
    except AnnValidationError:
        return False
    return True


# --- mining ----------------------------------------------------------------------------------------------------

class AnnMiner:
    """Mines announcements for one hard nonce: builds both tables once, then searches soft nonces."""

    def __init__(self, template: Announcement, parent_block_hash: bytes):
        self.template = replace(template, soft_nonce=0)
        depth = table_depth(template.version)
        if depth is None:
            raise ValueError(f"cannot mine announcement version {template.version}")
        self.table_size = 1 << depth
        self.parent_block_hash = bytes(parent_block_hash)
        self.legacy = template.version == 0
        self._ready = False

    def prepare(self) -> None:
        """Build table 1, its merkle tree, and table 2. Raises RandHashError when this hard nonce is unusable."""
        hdr = self.template.header(soft_nonce=0)
        hash0 = ann_hash0(hdr, self.parent_block_hash)
        if self.legacy:
            table1 = [mk_item_v0(i, hash0[:32]) for i in range(self.table_size)]
        else:
            table1 = build_table(hash0[:32], hash0[32:], self.table_size)
        self.layers = merkle_layers(table1)
        self.root = self.layers[-1][0]
        if self.legacy:
            self.table2 = table1              # v0 searches the committed table itself
        else:
            seed = h64(self.root + hash0)
            self.table2 = build_table(seed[:32], seed[32:], self.table_size)
        self.hasher = _SoftNonceHasher(h64(hdr + self.root)[:32])
        self._ready = True

    def _hash(self, soft_nonce: int) -> tuple[bytearray, int]:
        if not self._ready:
            self.prepare()
        return self.hasher.run(soft_nonce, self.table2.__getitem__, self.table_size, self.legacy)

    def _assemble(self, soft_nonce: int, state: bytes, item_no: int) -> Announcement:
        branch = merkle_branch(self.layers, item_no).ljust(MERKLE_DEPTH * 64, b"\0")
        if self.legacy:                       # v0: branch and the last item's prefix in clear
            return replace(self.template, soft_nonce=soft_nonce, merkle_branch=branch, merkle_root=self.root,
                           item4_prefix=self.table2[item_no][:PREFIX_SIZE])
        clear = replace(self.template, soft_nonce=soft_nonce, merkle_branch=branch, merkle_root=self.root,
                        item4_prefix=bytes(PREFIX_SIZE))
        return Announcement.parse(_encrypt(clear.pack(), state))

    def build(self, soft_nonce: int) -> tuple[Announcement, bytes]:
        """The announcement for a soft nonce and its work hash, whether or not the hash meets the target."""
        state, item_no = self._hash(soft_nonce)
        return self._assemble(soft_nonce, bytes(state), item_no), bytes(state[:32])

    def try_soft_nonce(self, soft_nonce: int) -> Announcement | None:
        """The finished announcement if this soft nonce meets the target, else None."""
        if not self._ready:
            self.prepare()
        try:
            state, item_no = self._hash(soft_nonce)
        except RandHashError:                 # v0: this soft nonce hit an unusable per-item program
            return None
        if not hash_meets_target(bytes(state[:32]), self.template.work_bits):
            return None
        return self._assemble(soft_nonce, bytes(state), item_no)

    def search(self, start: int = 0, stop: int | None = None):
        """Yield every announcement found for soft nonces start..stop-1 (default: up to softNonceMax)."""
        last = soft_nonce_max(self.template.work_bits)
        stop = last + 1 if stop is None else min(stop, last + 1)
        for soft_nonce in range(start, stop):
            found = self.try_soft_nonce(soft_nonce)
            if found is not None:
                yield found


def mine(parent_block_hash: bytes, parent_block_height: int, work_bits: int, *, hard_nonce: int = 0,
         hard_nonce_step: int = 1, max_hard_nonces: int = 16, content_type: int = 0, content_length: int = 0,
         content_hash: bytes = bytes(32), signing_key: bytes = bytes(32), fast_depth: int | None = None,
         version: int | None = None) -> Announcement:
    """Mine one announcement (faithful version 1 unless `fast_depth` or `version=0` is given).

    When the soft nonces of a hard nonce are used up, or its program is unusable, the hard nonce is bumped by
    `hard_nonce_step` (the C miner bumps by its thread count) and both tables are rebuilt.
    """
    if version is None:
        version = 1 if fast_depth is None else fast_version(fast_depth)
    for attempt in range(max_hard_nonces):
        template = Announcement(version=version, hard_nonce=(hard_nonce + attempt * hard_nonce_step) & 0xFFFFFFFF,
                                work_bits=work_bits, parent_block_height=parent_block_height,
                                content_type=content_type, content_length=content_length,
                                content_hash=bytes(content_hash), signing_key=bytes(signing_key))
        miner = AnnMiner(template, parent_block_hash)
        try:
            miner.prepare()
        except RandHashError:
            continue
        for found in miner.search():
            return found
    raise RuntimeError(f"no announcement found in {max_hard_nonces} hard nonces")
