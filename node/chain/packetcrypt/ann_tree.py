"""The announcement tree of a PacketCrypt block and its compressed proof (pkt-reference.md §5.5-§5.6).

The tree is a merkle tree whose entries carry a key range [start, end): the key of an announcement is
LE64(H32(ann)[0:8]), leaves are sorted by key, and every parent covers its children's ranges. A proof that
lets a validator recompute the root therefore also proves that the 4 proven announcements have no duplicate
in the tree (duplicates would need overlapping ranges).

Layout (pktd `block/proof/tree.go`, C `PacketCryptProof.c`):
  entry  = hash32 || start u64 LE || end u64 LE (48 bytes)
  leaf 0 = the "zero entry" (0^32, 0, start of leaf 1); leaf i = (annHash, key, key of the next leaf or MAX)
  every layer of odd length (> 1) gets a pad entry (ff^32, MAX, MAX); parent = (H32(left48||right48),
  left.start, right.end); the root must cover [0, MAX]; the coinbase commits R = H32(root.hash||0^8||ff^8).
The compressed AnnProof walks the sub-tree spanned by the 4 proven leaves in pre-order and carries only what
cannot be computed: an 8-byte range for right-side leaves and for provided inner nodes, and a 32-byte hash for
every provided (off-path, non-pad) node.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .hashing import h32

MAX64 = (1 << 64) - 1
ZERO_HASH = bytes(32)
PAD_HASH = b"\xff" * 32
_ENTRY = struct.Struct("<32sQQ")


class AnnProofError(ValueError):
    """A compressed announcement proof that is malformed or does not describe a valid tree."""


def ann_key(ann_hash: bytes) -> int:
    """The tree key of an announcement: LE64 of the first 8 bytes of H32(ann)."""
    return int.from_bytes(ann_hash[:8], "little")


def sort_and_dedupe(ann_hashes) -> list[bytes]:
    """Sort announcement hashes by key, keeping the first of equal keys and dropping keys 0 and MAX."""
    out: list[bytes] = []
    last = None
    for h in sorted(ann_hashes, key=lambda h: (ann_key(h), bytes(h))):
        k = ann_key(h)
        if k in (0, MAX64) or k == last:
            continue
        out.append(bytes(h))
        last = k
    return out


def entry_bytes(hash32: bytes, start: int, end: int) -> bytes:
    return _ENTRY.pack(hash32, start, end)


def _parent(left: tuple, right: tuple) -> tuple:
    return (h32(entry_bytes(*left) + entry_bytes(*right)), left[1], right[2])


def commitment_root(root_hash: bytes) -> bytes:
    """R, the value committed in the coinbase: H32(root.hash || LE64(0) || LE64(MAX))."""
    return h32(entry_bytes(root_hash, 0, MAX64))


class AnnTree:
    """A complete announcement tree over announcement hashes that are already sorted and de-duplicated."""

    def __init__(self, sorted_hashes: list[bytes]):
        if not sorted_hashes:
            raise ValueError("an announcement tree needs at least one announcement")
        keys = [ann_key(h) for h in sorted_hashes]
        if not all(0 < k < MAX64 for k in keys) or any(a >= b for a, b in zip(keys, keys[1:])):
            raise ValueError("announcement hashes must be sorted by key, unique, and not 0 or MAX")
        self.ann_hashes = list(sorted_hashes)
        ends = keys[1:] + [MAX64]
        layer = [(ZERO_HASH, 0, keys[0])] + [(h, k, e) for h, k, e in zip(sorted_hashes, keys, ends)]
        self.layers = [layer]
        while len(layer) > 1:
            if len(layer) % 2:
                layer = layer + [(PAD_HASH, MAX64, MAX64)]
                self.layers[-1] = layer
            layer = [_parent(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
            self.layers.append(layer)

    @classmethod
    def from_hashes(cls, ann_hashes) -> "AnnTree":
        return cls(sort_and_dedupe(ann_hashes))

    @property
    def ann_count(self) -> int:
        """N, the number of announcements (the zero entry and pads not counted)."""
        return len(self.ann_hashes)

    @property
    def entry_count(self) -> int:
        """Number of entries in all layers, pads included (C PacketCryptProof_entryCount(N+1))."""
        return sum(len(layer) for layer in self.layers)

    @property
    def root(self) -> tuple:
        return self.layers[-1][0]

    @property
    def root_hash(self) -> bytes:
        return self.root[0]

    @property
    def commitment(self) -> bytes:
        return commitment_root(self.root_hash)

    def index_for_item(self, item_no: int) -> int:
        """Index in the sorted list of the announcement a block-mining item number selects."""
        return item_no % self.ann_count

    def make_proof(self, item_nos) -> bytes:
        """The compressed AnnProof for the 4 announcements selected by the block miner's item numbers."""
        leaves = [self.index_for_item(i) + 1 for i in item_nos]
        out = bytearray()
        for node in _skeleton(self.ann_count + 1, leaves):
            level = self.layers[node.depth]
            hash32, start, end = level[node.index]
            if node.explicit_range:
                out += struct.pack("<Q", (end - start) & MAX64)
            if not node.computable and not node.pad:
                out += hash32
        return bytes(out)


# --- the verifier side: the proof skeleton and the value propagation -----------------------------------------

class _Node:
    __slots__ = ("index", "depth", "parent", "left", "right_child", "is_right", "leaf", "computable", "pad",
                 "first", "hash", "start", "end", "range")

    def __init__(self, index: int, depth: int, parent):
        self.index, self.depth, self.parent = index, depth, parent
        self.left = self.right_child = None
        self.is_right = bool(index & 1)
        self.leaf = depth == 0
        self.computable = self.pad = False
        self.first = index == 0
        self.hash = self.start = self.end = self.range = None

    @property
    def explicit_range(self) -> bool:
        # Right leaves end at the (unknown) next key; provided inner nodes need their span. Left leaves get
        # their start from the hash and their end from the right sibling; computable nodes and pads need nothing.
        if self.leaf:
            return self.is_right and not self.pad
        return not (self.computable or self.pad)

    def complete(self) -> bool:
        return None not in (self.hash, self.start, self.end)


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


def _skeleton(leaf_count: int, leaves: list[int]) -> list[_Node]:
    """The sub-tree spanned by the paths to `leaves`, in pre-order (node, left, right), as pktd mkEntries."""
    height = _ceil_log2(leaf_count)
    nodes: list[_Node] = []

    def visit(index: int, depth: int, parent):
        node = _Node(index, depth, parent)
        nodes.append(node)
        if any(leaf >> depth == index for leaf in leaves):
            node.computable = True
            if depth:
                node.left = visit(index * 2, depth - 1, node)
                node.right_child = visit(index * 2 + 1, depth - 1, node)
        elif index << depth >= leaf_count:
            node.pad = True
        return node

    visit(0, height, None)
    return nodes


def _sibling(node: _Node):
    if node.parent is None:
        return None
    return node.parent.left if node.is_right else node.parent.right_child


def _assign(node: _Node, field: str, value) -> bool:
    """Set a value once; True if it changed something. A second, different value means a bad proof."""
    old = getattr(node, field)
    if old is None:
        setattr(node, field, value)
        return True
    if old != value:
        raise AnnProofError(f"conflicting {field} for tree node {node.depth}/{node.index}")
    return False


def _propagate(nodes: list[_Node]) -> None:
    changed = True
    while changed:
        changed = False
        for n in nodes:
            if n.leaf and n.hash is not None:
                changed |= _assign(n, "start", ann_key(n.hash))
            if n.first:
                changed |= _assign(n, "start", 0)
            if n.start is not None and n.range is not None:
                changed |= _assign(n, "end", (n.start + n.range) & MAX64)
            if n.end is not None and n.range is not None:
                changed |= _assign(n, "start", (n.end - n.range) & MAX64)
            if n.start is not None and n.end is not None:
                changed |= _assign(n, "range", (n.end - n.start) & MAX64)
            sib = _sibling(n)
            if sib is not None and not n.is_right:
                if n.end is not None:
                    changed |= _assign(sib, "start", n.end)
                if sib.start is not None:
                    changed |= _assign(n, "end", sib.start)
            if n.left is not None and n.left.complete() and n.right_child.complete():
                h, s, e = _parent((n.left.hash, n.left.start, n.left.end),
                                  (n.right_child.hash, n.right_child.start, n.right_child.end))
                changed |= _assign(n, "hash", h)
                changed |= _assign(n, "start", s)
                changed |= _assign(n, "end", e)


def pcp_hash(ann_hashes, ann_count: int, item_nos, proof: bytes) -> bytes:
    """Recompute the commitment R from 4 announcement hashes, N, the 4 item numbers and an AnnProof (PcpHash).

    Raises AnnProofError if the proof is short, too long or inconsistent.
    """
    if ann_count < 1:
        raise AnnProofError("announcement count must be at least 1")
    if len(ann_hashes) != 4 or len(item_nos) != 4:
        raise AnnProofError("a PacketCrypt proof covers exactly 4 announcements")
    leaves = [(i % ann_count) + 1 for i in item_nos]
    nodes = _skeleton(ann_count + 1, leaves)
    by_leaf = {n.index: n for n in nodes if n.leaf and n.computable}
    for leaf, h in zip(leaves, ann_hashes):
        _assign(by_leaf[leaf], "hash", bytes(h))
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(proof):
            raise AnnProofError("announcement proof is too short")
        pos += n
        return bytes(proof[pos - n:pos])

    for n in nodes:
        if n.pad:
            n.hash, n.start, n.end, n.range = PAD_HASH, MAX64, MAX64, 0
        if n.explicit_range:
            _assign(n, "range", int.from_bytes(take(8), "little"))
        if n.hash is None and not n.computable:
            n.hash = take(32)
    if pos != len(proof):
        raise AnnProofError("extra bytes at the end of the announcement proof")
    _propagate(nodes)
    root = nodes[0]
    if root.hash is None or root.start != 0 or root.end != MAX64:
        raise AnnProofError("announcement proof does not yield a root covering the whole key space")
    return commitment_root(root.hash)


# --- coinbase commitment --------------------------------------------------------------------------------------

COMMIT_MAGIC = 0x0211F909
COMMIT_SCRIPT_PREFIX = b"\x6a\x30"                                  # OP_RETURN, push 48 bytes
COMMIT_PATTERN = COMMIT_SCRIPT_PREFIX + struct.pack("<I", COMMIT_MAGIC) + b"\xfc" * 44
_COMMIT = struct.Struct("<II32sQ")


class CommitmentError(ValueError):
    """A coinbase without a (well-formed) PacketCrypt commitment."""


@dataclass(frozen=True)
class CoinbaseCommitment:
    """The 48-byte PacketCrypt commitment of a coinbase: least-work aged ann target, root R and N."""
    ann_least_work_target: int
    root: bytes
    ann_count: int

    def pack(self) -> bytes:
        return _COMMIT.pack(COMMIT_MAGIC, self.ann_least_work_target, self.root, self.ann_count)

    @classmethod
    def parse(cls, data: bytes) -> "CoinbaseCommitment":
        if len(data) != 48:
            raise CommitmentError("a coinbase commitment is 48 bytes")
        magic, target, root, count = _COMMIT.unpack(data)
        if magic != COMMIT_MAGIC:
            raise CommitmentError(f"bad coinbase commitment magic {magic:#010x}")
        return cls(target, root, count)

    def script(self) -> bytes:
        """The output script carrying it: OP_RETURN PUSH48 <commitment>."""
        return COMMIT_SCRIPT_PREFIX + self.pack()


def insert_commitment(coinbase: bytes, commitment: CoinbaseCommitment) -> bytes:
    """Patch the placeholder pattern (6a30 09f91102 fc*44) left in a coinbase by its builder."""
    at = coinbase.find(COMMIT_PATTERN)
    if at < 0:
        raise CommitmentError("coinbase has no commitment placeholder")
    return coinbase[:at] + commitment.script() + coinbase[at + len(COMMIT_PATTERN):]


def extract_commitment(coinbase: bytes) -> CoinbaseCommitment:
    """Find and parse the commitment inside serialized coinbase bytes (the last one if several)."""
    at = coinbase.rfind(COMMIT_SCRIPT_PREFIX + struct.pack("<I", COMMIT_MAGIC))
    if at < 0 or at + 50 > len(coinbase):
        raise CommitmentError("coinbase has no PacketCrypt commitment")
    return CoinbaseCommitment.parse(coinbase[at + 2:at + 50])


def commitment_from_scripts(output_scripts) -> CoinbaseCommitment:
    """pktd ExtractCoinbaseCommit: the first coinbase output script starting 6a30 09f91102 carries it."""
    prefix = COMMIT_SCRIPT_PREFIX + struct.pack("<I", COMMIT_MAGIC)
    for script in output_scripts:
        if len(script) > len(prefix) and script.startswith(prefix):
            return CoinbaseCommitment.parse(bytes(script[2:50]).ljust(48, b"\0"))
    raise CommitmentError("no coinbase output carries a PacketCrypt commitment")
