"""What a PacketCrypt pool's parts exchange (pkt-reference.md §5.10; PacketCrypt `js/Protocol.js`, `js/Util.js`,
`js/Master.js`, `js/BlkHandler.js`). Pure code.

Work (`GET /work_<height>.bin` from the master), little-endian:
    header[80] | signingKey[32] | shareTarget i32 | annTarget i32 | height i32 | cnwLen i32 |
    coinbase_no_witness[cnwLen] | merkle branch (32 bytes each)
The header carries the previous block and bits; the block miner puts in the merkle root (from the coinbase with
its commitment patched over COMMIT_PATTERN, and the branch) and its nonce. The signing key is all zero: a pktlab
pool does not sign announcements (Util.getKeypair without privateSeed).

Targets. `work_multiple(T) = work(T) / BASE` and `workMultipleToTarget`, where the pool's BASE_DIFFICULTY is
"the hashes needed for a share at the pow limit" (PayMaker.js: aligned with pktd's pow limit). A pktlab chain's
pow limit is 0x207fffff, whose work is 2, so BASE is taken from the chain's parameters, not the 4096 of mainnet's
0x1f0fffff. shareTarget = target(work(blockTarget) / shareWorkDivisor) (Master.js computeShareTar), computed in
integers (the JS uses doubles). A share must meet the effective target of the share target with the block's
announcements, as a block does with its bits (pktd ValidatePcProof with shareTarget).

A share upload (`POST /submit` to a block handler) is the JSON {"coinbase_commit": hex(48), "header_and_proof":
hex(80-byte header + PacketCryptProof TLVs)} of at most SHARE_MAX_LENGTH bytes, with x-pc-payto; its id is
getShareId: BLAKE2b-256(header) with its first u32 XORed with the proof's first u32 (nonce2), 16 bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..packetcrypt import difficulty
from ..packetcrypt.ann_tree import COMMIT_PATTERN, CoinbaseCommitment
from ..packetcrypt.hashing import h32

PROTOCOL_VERSION = 3                 # Protocol.js VERSION ("hard version" in config.json)
SOFT_VERSION = 2
DEFAULT_ANN_TARGET = 0x20020000      # pool default annMinWork (work 127, §5.7)
DEFAULT_SHARE_DIVISOR = 4
DEFAULT_MINE_OLD_ANNS = 3        # announcements usable at once (pool.example.js); 2 stalls after a burst of blocks
SHARE_MAX_LENGTH = 0xFFFF
_FIXED = struct.Struct("<iiii")


class WorkError(ValueError):
    pass


@dataclass(frozen=True)
class Work:
    header: bytes            # 80 bytes, merkle root and nonce to be filled in
    share_target: int
    ann_target: int
    height: int
    coinbase: bytes          # with COMMIT_PATTERN
    branch: list[bytes]      # the coinbase's merkle branch
    signing_key: bytes = bytes(32)

    @property
    def prev_hash(self) -> bytes:
        return self.header[4:36]

    @property
    def bits(self) -> int:
        return struct.unpack_from("<I", self.header, 72)[0]

    def encode(self) -> bytes:
        return (self.header + self.signing_key + _FIXED.pack(_i32(self.share_target), _i32(self.ann_target),
                                                             self.height, len(self.coinbase))
                + self.coinbase + b"".join(self.branch))

    @classmethod
    def decode(cls, data: bytes) -> Work:
        if len(data) < 80 + 32 + 16:
            raise WorkError(f"work of {len(data)} bytes is too short")
        header, key = data[:80], data[80:112]
        share, ann, height, cnw_len = _FIXED.unpack_from(data, 112)
        rest = data[128:]
        if not 0 <= cnw_len <= len(rest) or (len(rest) - cnw_len) % 32:
            raise WorkError("work: coinbase length and merkle branch do not add up")
        branch = [rest[i:i + 32] for i in range(cnw_len, len(rest), 32)]
        return cls(header, share & 0xFFFFFFFF, ann & 0xFFFFFFFF, height, rest[:cnw_len], branch, key)


def _i32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def work_multiple(bits: int, base_work: int) -> float:
    """Util.getWorkMultiple: the target's work in units of the pow limit's work."""
    return difficulty.work_for_compact(bits) / base_work


def share_target(block_bits: int, divisor: int) -> int:
    """Master.js computeShareTar: the target of 1/divisor of the block target's work."""
    if divisor < 1:
        raise ValueError("the share work divisor must be at least 1")
    work = max(difficulty.work_for_compact(block_bits) // divisor, 1)
    return min(difficulty.big_to_compact(difficulty.target_for_work(work)), difficulty.MAX_TARGET_COMPACT)


def patch_commitment(coinbase: bytes, commitment: bytes) -> bytes:
    """The coinbase with the 48 commitment bytes written over the placeholder (BlkHandler.js COMMIT_PATTERN)."""
    CoinbaseCommitment.parse(commitment)            # raises CommitmentError for a bad one
    at = coinbase.find(COMMIT_PATTERN)
    if at < 0:
        raise WorkError("the work's coinbase has no commitment placeholder")
    return coinbase[:at + 2] + commitment + coinbase[at + len(COMMIT_PATTERN):]


def share_id(header80: bytes, pcp_value: bytes) -> bytes:
    """Util.getShareId: which share this is, for dedupe."""
    hh = bytearray(h32(header80))
    first = struct.unpack_from("<I", hh)[0] ^ struct.unpack_from("<I", pcp_value)[0]
    struct.pack_into("<I", hh, 0, first)
    return bytes(hh[:16])


def config_json(*, tip_hash: str, height: int, master_url: str, ann_urls: list[str], blk_urls: list[str],
                paymaker_url: str, ann_target: int, mine_old_anns: int) -> dict:
    """Master.js mkConfig: what every miner reads first."""
    return {"tipHash": tip_hash, "currentHeight": height, "masterUrl": master_url,
            "submitAnnUrls": [u + "/submit" for u in ann_urls], "downloadAnnUrls": list(ann_urls),
            "submitBlockUrls": [u + "/submit" for u in blk_urls], "paymakerUrl": paymaker_url,
            "version": PROTOCOL_VERSION, "softVersion": SOFT_VERSION, "annVersions": [1],
            "mineOldAnns": mine_old_anns, "annTarget": ann_target}
