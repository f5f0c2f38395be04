"""PacketCrypt block proof of work: the hash over 4 announcements, the miner loop, the PacketCryptProof wire
format and block proof validation (pkt-reference.md §5.5, §5.8; pktd `block/blockvalid.go`, `packetcrypt.go`,
`wire/packetcryptproof.go`).

The block miner hashes the 80-byte header with a 32-bit nonce2 into a CryptoCycle state; the state picks 4
announcements from the block's sorted announcement list, absorbs them, and the result must meet a target that
gets easier with more and harder announcements (difficulty.effective_target).
"""
from __future__ import annotations

import enum
import io
import struct
from dataclasses import dataclass, field
from typing import Callable

import nacl.exceptions
import nacl.signing

from . import announcement as ann_mod
from . import cryptocycle, difficulty
from .ann_tree import AnnProofError, AnnTree, CoinbaseCommitment, CommitmentError, pcp_hash, sort_and_dedupe
from .hashing import h32

HEADER_SIZE = 80
ANN_SIZE = ann_mod.ANN_SIZE
MAX_PARENT_HEIGHT = 0x7FFFFFFF
PCP_MAX_LENGTH = 131072
TYPE_END, TYPE_PCP, TYPE_SIGNATURES, TYPE_CONTENT_PROOFS, TYPE_VERSION = 0, 1, 2, 3, 4


def header_bits(header80: bytes) -> int:
    """The compact target field of an 80-byte bitcoin-style header (the PacketCrypt target in PKT)."""
    return struct.unpack_from("<I", header80, 72)[0]


# --- the block PacketCrypt hash ---------------------------------------------------------------------------------

def pc_hash(header80: bytes, nonce2: int, anns: list[bytes], content_blocks=None) -> tuple[bytes, list[int]]:
    """The block work hash and the 4 raw item numbers: init(H32(header), nonce2), 4x update with
    anns[item_no % N], smul, final. `content_blocks` (PcP v1) gives a 32-byte block or None per round."""
    if not anns:
        raise ValueError("block mining needs at least one announcement")
    blocks = content_blocks or [None] * 4
    return _pc_hash_from(cryptocycle.SeededInit(h32(header80)), nonce2,
                         lambda j, item_no: (anns[item_no % len(anns)], blocks[j]))


def _pc_hash_from(seeded: cryptocycle.SeededInit, nonce2: int, pick) -> tuple[bytes, list[int]]:
    """pick(round, item_no) -> (ann1024, content block or None)."""
    s = seeded.init(nonce2)
    item_nos = []
    for j in range(4):
        item_no = cryptocycle.get_item_no(s)
        item_nos.append(item_no)
        ann, content = pick(j, item_no)
        cryptocycle.update(s, ann, content)
    cryptocycle.smul(s)
    cryptocycle.final(s)
    return bytes(s[:32]), item_nos


# --- PcP v1 content proofs: a BLAKE2b-256 merkle tree over the 32-byte blocks of an announcement's content ---

def content_length_of(ann: bytes) -> int:
    return struct.unpack_from("<I", ann, 20)[0]


def _content_levels(content: bytes) -> list[list[bytes]]:
    level = [content[i:i + 32].ljust(32, b"\0") for i in range(0, max(len(content), 1), 32)]
    levels = [level]
    while len(level) > 1:
        # a node without a right sibling (past the end of the content) moves up unchanged
        level = [h32(level[i] + level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def content_hash(content: bytes) -> bytes:
    """The announcement's content_hash: the content itself (right-padded) up to 32 bytes, else the tree root."""
    if len(content) <= 32:
        return content.ljust(32, b"\0")
    return _content_levels(content)[-1][0]


def proof_index(header80: bytes, nonce2: int) -> int:
    """Which content block a PcP v1 block proves: LE32(H32(header)) ^ nonce2 (mod the block count)."""
    return struct.unpack_from("<I", h32(header80))[0] ^ nonce2


def content_proof(content: bytes, proof_idx: int) -> bytes:
    """The proved 32-byte block followed by the existing siblings up the tree (pktd SplitContentProof layout)."""
    levels = _content_levels(content)
    idx = proof_idx % len(levels[0])
    out = [levels[0][idx]]
    for level in levels[:-1]:
        if idx ^ 1 < len(level):
            out.append(level[idx ^ 1])
        idx >>= 1
    return b"".join(out)


@dataclass
class BlockAnnSet:
    """The announcements a block is mined with: sorted/de-duplicated list, its tree, and the commitment."""
    anns: list[bytes]
    tree: AnnTree
    commitment: CoinbaseCommitment
    contents: dict = field(default_factory=dict)     # ann bytes -> content, for PcP v1 content proofs

    def content_block(self, ann: bytes, proof_idx: int) -> bytes | None:
        """PcP v1: the content block an announcement contributes to the block hash (None up to 32 bytes)."""
        if content_length_of(ann) <= 32:
            return None
        content = self.contents.get(ann)
        if content is None:
            raise ValueError("PcP v1 mining needs the content of announcements with more than 32 bytes")
        return content_proof(content, proof_idx)[:32]

    @classmethod
    def build(cls, anns, block_height: int, pcp_version: int = 2, contents: dict | None = None) -> "BlockAnnSet":
        """Keep the announcements usable at `block_height` (aging, §5.7), sort and de-duplicate them by hash
        key, and commit to the least-work aged target among them. `contents` (PcP v1) maps ann -> content."""
        by_hash: dict[bytes, tuple[bytes, int]] = {}
        for raw in anns:
            ann = ann_mod.Announcement.parse(bytes(raw))
            if block_height < difficulty.ANN_WAIT_PERIOD:
                aged = ann.work_bits
            else:
                aged = difficulty.aged_ann_target(ann.work_bits, block_height - ann.parent_block_height,
                                                  pcp_version)
            if aged == difficulty.INVALID_TARGET:
                continue
            by_hash.setdefault(h32(bytes(raw)), (bytes(raw), aged))
        hashes = sort_and_dedupe(by_hash)
        if not hashes:
            raise ValueError("no announcement is usable at this height")
        tree = AnnTree(hashes)
        least_work = max(by_hash[h][1] for h in hashes)
        commitment = CoinbaseCommitment(least_work, tree.commitment, tree.ann_count)
        return cls([by_hash[h][0] for h in hashes], tree, commitment, dict(contents or {}))

    def effective_target(self, block_bits: int, pcp_version: int = 2) -> int:
        return difficulty.effective_target(block_bits, self.commitment.ann_least_work_target,
                                           self.commitment.ann_count, pcp_version)


@dataclass
class BlockSolution:
    nonce2: int
    item_nos: list[int]
    work_hash: bytes


def mine_block(header80: bytes, ann_set: BlockAnnSet, target: int, *, start_nonce2: int = 0,
               max_tries: int = 1 << 32, should_stop: Callable[[], bool] | None = None,
               version: int = 2) -> BlockSolution | None:
    """Search nonce2 values from start_nonce2 for a work hash meeting the compact `target` (the effective or
    share target). Returns None when the tries run out or should_stop() says so (checked every 256 tries)."""
    seeded = cryptocycle.SeededInit(h32(header80))
    limit = difficulty.compact_to_big(target)
    end = min(start_nonce2 + max_tries, 1 << 32)
    anns, n = ann_set.anns, len(ann_set.anns)
    for nonce2 in range(start_nonce2, end):
        if version <= 1:
            pidx = proof_index(header80, nonce2)

            def pick(_j, item_no):
                ann = anns[item_no % n]
                return ann, ann_set.content_block(ann, pidx)
        else:
            def pick(_j, item_no):
                return anns[item_no % n], None
        work_hash, item_nos = _pc_hash_from(seeded, nonce2, pick)
        if int.from_bytes(work_hash, "little") <= limit:
            return BlockSolution(nonce2, item_nos, work_hash)
        if should_stop is not None and nonce2 & 0xFF == 0xFF and should_stop():
            return None
    return None


# --- PacketCryptProof wire format -------------------------------------------------------------------------------

class PcpFormatError(ValueError):
    """A PacketCryptProof that cannot be decoded."""


def write_varint(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def read_varint(r: io.BytesIO) -> int:
    first = r.read(1)
    if not first:
        raise PcpFormatError("truncated varint")
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}.get(first[0])
    if size is None:
        return first[0]
    data = r.read(size)
    if len(data) != size:
        raise PcpFormatError("truncated varint")
    return int.from_bytes(data, "little")


def _read_exact(r: io.BytesIO, n: int) -> bytes:
    with r.getbuffer() as buf:
        remaining = len(buf) - r.tell()
    if n > remaining:                  # also guards against absurd lengths from a hostile varint
        raise PcpFormatError("truncated PacketCryptProof")
    data = r.read(n)
    if len(data) != n:
        raise PcpFormatError("truncated PacketCryptProof")
    return data


@dataclass
class PacketCryptProof:
    """The proof between the block header and the transactions: nonce2, the 4 announcements, the AnnProof,
    ed25519 signatures of signed announcements, PcP v1 content proofs, and the PcP version (0 = absent)."""
    nonce2: int
    anns: list[bytes]
    ann_proof: bytes
    signatures: list[bytes | None] = field(default_factory=lambda: [None] * 4)
    content_proof: bytes | None = None
    version: int = 2

    def encode(self) -> bytes:
        if len(self.anns) != 4 or any(len(a) != ANN_SIZE for a in self.anns):
            raise ValueError("a PacketCryptProof carries 4 announcements of 1024 bytes")
        out = bytearray()
        body = struct.pack("<I", self.nonce2) + b"".join(self.anns) + self.ann_proof
        out += write_varint(TYPE_PCP) + write_varint(len(body)) + body
        sigs = b"".join(s for s in self.signatures if s)
        if sigs:
            out += write_varint(TYPE_SIGNATURES) + write_varint(len(sigs)) + sigs
        if self.content_proof is not None:
            out += write_varint(TYPE_CONTENT_PROOFS) + write_varint(len(self.content_proof)) + self.content_proof
        if self.version > 0:
            v = write_varint(self.version)
            out += write_varint(TYPE_VERSION) + write_varint(len(v)) + v
        out += write_varint(TYPE_END) + write_varint(0)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> tuple["PacketCryptProof", int]:
        """Decode from the start of `data`; returns the proof and the number of bytes it took."""
        r = io.BytesIO(data)
        pcp = None
        while True:
            t = read_varint(r)
            length = read_varint(r)
            if t == TYPE_END:
                if pcp is None:
                    raise PcpFormatError("missing PacketCrypt proof")
                return pcp, r.tell()
            if t == TYPE_PCP:
                if not 4 * ANN_SIZE + 4 < length <= PCP_MAX_LENGTH:
                    raise PcpFormatError(f"bad PacketCrypt proof length {length}")
                body = _read_exact(r, length)
                anns = [body[4 + i * ANN_SIZE:4 + (i + 1) * ANN_SIZE] for i in range(4)]
                pcp = cls(struct.unpack_from("<I", body)[0], anns, body[4 + 4 * ANN_SIZE:], version=0)
            elif t == TYPE_SIGNATURES:
                if pcp is None:
                    raise PcpFormatError("signatures before the PacketCrypt proof")
                value = _read_exact(r, length)
                pos = 0
                for i, a in enumerate(pcp.anns):
                    if any(a[56:88]):          # only announcements with a signing key carry a signature
                        if pos + 64 > len(value):
                            raise PcpFormatError("not enough bytes for the announcement signatures")
                        pcp.signatures[i] = value[pos:pos + 64]
                        pos += 64
                if pos != len(value):
                    raise PcpFormatError("dangling bytes after the announcement signatures")
            elif t == TYPE_CONTENT_PROOFS:
                if pcp is None:
                    raise PcpFormatError("content proofs before the PacketCrypt proof")
                pcp.content_proof = _read_exact(r, length)
            elif t == TYPE_VERSION:
                if pcp is None:
                    raise PcpFormatError("version before the PacketCrypt proof")
                start = r.tell()
                version = read_varint(r)
                if r.tell() - start != length:
                    raise PcpFormatError("dangling bytes after the version field")
                pcp.version = version
            else:
                _read_exact(r, length)             # unknown types are skipped


def make_proof(ann_set: BlockAnnSet, solution: BlockSolution, signing_keys: dict | None = None,
               version: int = 2, header80: bytes | None = None) -> PacketCryptProof:
    """The PacketCryptProof for a solved block. `signing_keys` maps a signing public key (32 bytes) to its
    nacl SigningKey, for announcements that must be signed by the block miner. PcP v1 proofs also need the
    header (content proofs depend on it)."""
    anns = [ann_set.anns[i % ann_set.tree.ann_count] for i in solution.item_nos]
    sigs: list[bytes | None] = [None] * 4
    for i, a in enumerate(anns):
        key = a[56:88]
        if any(key):
            if not signing_keys or key not in signing_keys:
                raise ValueError(f"announcement {i} needs a signature by {key.hex()}")
            sigs[i] = signing_keys[key].sign(a).signature
    contents = None
    if version <= 1:
        if header80 is None:
            raise ValueError("a PcP v1 proof needs the block header for its content proofs")
        pidx = proof_index(header80, solution.nonce2)
        contents = b"".join(content_proof(ann_set.contents[a], pidx) for a in anns if content_length_of(a) > 32)
    return PacketCryptProof(solution.nonce2, anns, ann_set.tree.make_proof(solution.item_nos), sigs,
                            contents or None, version)


# --- block proof validation ---------------------------------------------------------------------------------------

class BlockReason(enum.Enum):
    PCP_VERSION_NOT_ALLOWED = "PCP_VERSION_NOT_ALLOWED"
    BAD_PARENT_HEIGHT = "BAD_PARENT_HEIGHT"
    UNKNOWN_PARENT = "UNKNOWN_PARENT"
    MISSING_SIGNATURE = "MISSING_SIGNATURE"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    BAD_CONTENT_PROOF = "BAD_CONTENT_PROOF"
    BAD_COINBASE = "BAD_COINBASE"
    INSUF_POW = "INSUF_POW"
    BAD_ANN = "BAD_ANN"
    ANN_INSUF_POW = "ANN_INSUF_POW"
    PCP_INVAL = "PCP_INVAL"
    PCP_MISMATCH = "PCP_MISMATCH"


class BlockValidationError(ValueError):
    def __init__(self, reason: BlockReason, detail: str = "", ann_reason=None):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.ann_reason = ann_reason       # the announcement's own Reason when reason is BAD_ANN


@dataclass(frozen=True)
class ChainRules:
    """Height-dependent PacketCrypt rules; MAINNET is pktd's, a testbed chain starting at 0 uses TESTBED."""
    min_v1_parent_height: int = ann_mod.MIN_V1_PARENT_HEIGHT
    pcp_v2_from_height: int = 113949       # PcP version > 1 is rejected below this height
    pcp_v1_until_height: int = 122621      # PcP version < 2 is rejected above this height
    allow_fast_anns: bool = False

    def pcp_version_allowed(self, version: int, height: int) -> bool:
        if version > 1 and height < self.pcp_v2_from_height:
            return False
        if version < 2 and height > self.pcp_v1_until_height:
            return False
        return True


MAINNET = ChainRules()
TESTBED = ChainRules(min_v1_parent_height=0, pcp_v2_from_height=0, pcp_v1_until_height=-1)
TESTBED_FAST = ChainRules(min_v1_parent_height=0, pcp_v2_from_height=0, pcp_v1_until_height=-1,
                          allow_fast_anns=True)


def _content_proofs(pcp: PacketCryptProof, proof_idx: int) -> list[bytes | None]:
    """Split the PcP v1 content proof per announcement and check each against its content hash."""
    out: list[bytes | None] = [None] * 4
    r = io.BytesIO(pcp.content_proof or b"")
    for i, raw in enumerate(pcp.anns):
        length = struct.unpack_from("<I", raw, 20)[0]
        if length <= 32:
            continue
        blocks = (length + 31) // 32
        idx = proof_idx % blocks
        node = r.read(32)
        if len(node) != 32:
            raise BlockValidationError(BlockReason.BAD_CONTENT_PROOF, f"missing content proof for ann {i}")
        first = node
        size = 32
        for _ in range((blocks - 1).bit_length()):
            if size * (idx ^ 1) >= length:     # no right sibling at this level: the node moves up unchanged
                idx >>= 1
                size <<= 1
                continue
            sib = r.read(32)
            if len(sib) != 32:
                raise BlockValidationError(BlockReason.BAD_CONTENT_PROOF, f"short content proof for ann {i}")
            node = h32(sib + node) if idx & 1 else h32(node + sib)
            idx >>= 1
            size <<= 1
        if node != raw[24:56]:
            raise BlockValidationError(BlockReason.BAD_CONTENT_PROOF, f"content proof mismatch for ann {i}")
        out[i] = first
    if r.read(1):
        raise BlockValidationError(BlockReason.BAD_CONTENT_PROOF, "dangling bytes after the content proofs")
    return out


def validate_block_proof(header80: bytes, pcp: PacketCryptProof, commitment: CoinbaseCommitment | bytes,
                         block_height: int, get_block_hash: Callable[[int], bytes | None], *,
                         rules: ChainRules = MAINNET, share_target: int = 0) -> tuple[bool, bytes]:
    """Check a block's PacketCrypt proof in the pktd order (§5.8).

    `commitment` is the coinbase commitment (or its 48 bytes); `get_block_hash(height)` returns the internal-
    order hash of this chain's block at a height, or None. Returns (is_block, work_hash): is_block is False when
    only `share_target` was met. Raises BlockValidationError naming the failed rule.
    """
    if len(header80) != HEADER_SIZE:
        raise ValueError("a block header is 80 bytes")
    version = pcp.version
    if not rules.pcp_version_allowed(version, block_height):
        raise BlockValidationError(BlockReason.PCP_VERSION_NOT_ALLOWED, f"PcP v{version} at {block_height}")
    anns = [ann_mod.Announcement.parse(a) for a in pcp.anns]
    parents = []
    for a in anns:
        if a.parent_block_height > MAX_PARENT_HEIGHT:
            raise BlockValidationError(BlockReason.BAD_PARENT_HEIGHT, str(a.parent_block_height))
        parent = get_block_hash(a.parent_block_height)
        if parent is None:
            raise BlockValidationError(BlockReason.UNKNOWN_PARENT, f"no block at {a.parent_block_height}")
        parents.append(parent)
    for i, (a, raw) in enumerate(zip(anns, pcp.anns)):
        if not a.has_signing_key:
            continue
        sig = pcp.signatures[i]
        if not sig:
            raise BlockValidationError(BlockReason.MISSING_SIGNATURE, f"announcement {i}")
        try:
            nacl.signing.VerifyKey(bytes(a.signing_key)).verify(bytes(raw), bytes(sig))
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            raise BlockValidationError(BlockReason.BAD_SIGNATURE, f"announcement {i}") from None
    content_blocks = None
    if version <= 1:
        content_blocks = _content_proofs(pcp, proof_index(header80, pcp.nonce2))
    elif pcp.content_proof is not None:
        raise BlockValidationError(BlockReason.BAD_CONTENT_PROOF, f"PcP v{version} must not carry content proofs")
    if not isinstance(commitment, CoinbaseCommitment):
        try:
            commitment = CoinbaseCommitment.parse(bytes(commitment))
        except CommitmentError as e:
            raise BlockValidationError(BlockReason.BAD_COINBASE, str(e)) from None
    if not difficulty.is_ann_min_diff_ok(commitment.ann_least_work_target, version):
        raise BlockValidationError(BlockReason.BAD_COINBASE, "announcement target out of range")

    blocks = content_blocks or [None] * 4
    work_hash, item_nos = _pc_hash_from(cryptocycle.SeededInit(h32(header80)), pcp.nonce2,
                                        lambda j, _item_no: (pcp.anns[j], blocks[j]))

    def meets(bits: int) -> bool:
        target = difficulty.effective_target(bits, commitment.ann_least_work_target, commitment.ann_count, version)
        return difficulty.hash_meets_target(work_hash, target)

    is_block = meets(header_bits(header80))
    if not is_block and not (share_target and meets(share_target)):
        raise BlockValidationError(BlockReason.INSUF_POW, work_hash[::-1].hex())

    for i, (a, raw, parent) in enumerate(zip(anns, pcp.anns, parents)):
        try:
            ann_mod.validate(raw, parent, pcp_version=version, min_v1_parent_height=rules.min_v1_parent_height,
                             allow_fast=rules.allow_fast_anns)
        except ann_mod.AnnValidationError as e:
            raise BlockValidationError(BlockReason.BAD_ANN, f"announcement {i}: {e}", e.reason) from None
        if block_height < difficulty.ANN_WAIT_PERIOD:
            aged = a.work_bits
        else:
            aged = difficulty.aged_ann_target(a.work_bits, (block_height - a.parent_block_height) & 0xFFFFFFFF,
                                              version)
        if aged > commitment.ann_least_work_target:
            raise BlockValidationError(BlockReason.ANN_INSUF_POW, f"announcement {i} aged target {aged:08x}")
    try:
        root = pcp_hash([h32(raw) for raw in pcp.anns], commitment.ann_count, item_nos, pcp.ann_proof)
    except AnnProofError as e:
        raise BlockValidationError(BlockReason.PCP_INVAL, str(e)) from None
    if root != commitment.root:
        raise BlockValidationError(BlockReason.PCP_MISMATCH, "announcement proof root differs from the coinbase")
    return is_block, work_hash
