"""Conformance checks for the `packetcrypt.*` vector kinds (tests/vectors/README.md).

Each check recomputes the vector's outputs from its inputs with this package and compares the keys the vector
lists in `check`. RandGen/RandHash kinds come from randhash_vectors (merged in when that module is present).
"""
from __future__ import annotations

import hashlib

from node.conformance import Mismatch, expect

from . import ann_tree, block, cryptocycle, difficulty
from .announcement import AnnValidationError, Announcement, validate
from .hashing import expand, h32


def _compare(vector: dict, got: dict) -> None:
    want = vector["outputs"]
    for key in vector.get("check", []):
        if key not in got:
            raise Mismatch(f"{key}: not computed by this implementation")
        if key.endswith("_hex") and isinstance(want[key], str) and isinstance(got[key], str):
            expect(key, int(got[key], 16), int(want[key], 16))      # big integers: leading zeros are optional
        else:
            expect(key, got[key], want[key])


def check_cryptocycle(vector: dict) -> None:
    i = vector["inputs"]
    if "state_header_48_bytes" in i:
        # one crypt() on a hand-laid state: key/nonce/data word in the header, AD then message at byte 48
        s = bytearray(cryptocycle.STATE_SIZE)
        s[0:48] = bytes.fromhex(i["state_header_48_bytes"])
        ad = bytes.fromhex(i["additional_data"])
        msg = bytes.fromhex(i["message"])
        if i["decrypt"]:
            msg = msg[:-16]                    # the tag is not part of the state's message
        start = 48 + 16 * ((len(ad) + 15) // 16)
        s[48:48 + len(ad)] = ad
        s[start:start + len(msg)] = msg
        cryptocycle.crypt(s)
        out = bytes(s[start:start + len(msg)])
        result = out if i["decrypt"] else out + bytes(s[16:32])
        _compare(vector, {"result": result.hex(), "state_after_b2b256": h32(bytes(s)).hex()})
        return
    if "data_word" in i:
        # one crypt() on a raw state: expand(2048, seed, 0) with any data word (bit-fields the miners never write)
        s = bytearray(expand(cryptocycle.STATE_SIZE, bytes.fromhex(i["seed"]), 0))
        s[12:16] = int(i["data_word"], 16).to_bytes(4, "little")
        cryptocycle.crypt(s)
        _compare(vector, {"data_word_after": "%08x" % int.from_bytes(s[12:16], "little"),
                          "poly1305_tag": bytes(s[16:32]).hex(), "state_after_b2b256": h32(bytes(s)).hex()})
        return
    s = cryptocycle.init(bytes.fromhex(i["seed"]), int(i["nonce_u64_hex"], 16))
    got = {"state_after_init_b2b256": h32(bytes(s)).hex(), "state_after_init_first64": s[:64].hex(),
           "item_no_after_init_u64_hex": "%016x" % cryptocycle.get_item_no(s)}
    cryptocycle.update(s, expand(1024, bytes.fromhex(i["item_seed"]), 0))
    got["state_after_update_b2b256"] = h32(bytes(s)).hex()
    got["item_no_after_update_u64_hex"] = "%016x" % cryptocycle.get_item_no(s)
    _compare(vector, got)


def check_difficulty(vector: dict) -> None:
    i = vector["inputs"]
    bt, at = int(i["block_target"], 16), int(i["ann_target"], 16)
    n, age = int(i["ann_count"]), int(i["ann_age_blocks"])
    c8 = "%08x".__mod__
    work_ann = difficulty.work_for_compact(at)
    got = {
        "work_for_block_target": "%x" % difficulty.work_for_compact(bt),
        "work_for_block_target_compact": c8(difficulty.big_to_compact(difficulty.work_for_compact(bt))),
        "work_for_ann_target": "%x" % work_ann,
        "work_for_ann_target_compact": c8(difficulty.big_to_compact(work_ann)),
        "target_for_work_of_ann_work_compact": c8(difficulty.big_to_compact(difficulty.target_for_work(
            difficulty.compact_to_big(difficulty.big_to_compact(work_ann))))),
        "effective_target_v2": c8(difficulty.effective_target(bt, at, n, 2)),
        "effective_target_v1": c8(difficulty.effective_target(bt, at, n, 1)),
        "aged_ann_target_v2": c8(difficulty.aged_ann_target(at, age, 2)),
        "aged_ann_target_v1": c8(difficulty.aged_ann_target(at, age, 1)),
        "hashrate_multiplier_v2_hex": "%x" % difficulty.hashrate_multiplier(at, n),
        "is_ann_min_diff_ok_v2": difficulty.is_ann_min_diff_ok(at, 2),
        "is_ann_min_diff_ok_v1": difficulty.is_ann_min_diff_ok(at, 1),
        "ann_soft_nonce_max": difficulty.soft_nonce_max(at),
    }
    _compare(vector, got)


def check_ann_tree(vector: dict) -> None:
    tree = ann_tree.AnnTree.from_hashes([bytes.fromhex(h) for h in vector["inputs"]["ann_hashes"]])
    root_hash, root_start, root_end = tree.root
    _compare(vector, {"leaf_count_N": tree.ann_count, "table_entry_count": tree.entry_count,
                      "root_hash": root_hash.hex(), "root_start": "%016x" % root_start,
                      "root_end": "%016x" % root_end, "commitment_R": tree.commitment.hex()})


def _rule_anns(label: bytes, count: int) -> list[bytes]:
    # the vector's ann_rule: 16 BLAKE2b-512 blocks of label || LE32(i) || LE32(k)
    return [b"".join(hashlib.blake2b(label + i.to_bytes(4, "little") + k.to_bytes(4, "little"),
                                     digest_size=64).digest() for k in range(16)) for i in range(count)]


def check_block_pc_hash(vector: dict) -> None:
    i = vector["inputs"]
    label = i["label"].encode()
    anns = _rule_anns(label, int(i["ann_count_N"]))
    if "header80" in i:
        header = bytes.fromhex(i["header80"])
    else:
        header = (hashlib.blake2b(label + b"/header", digest_size=64).digest()
                  + hashlib.blake2b(label + b"/header2", digest_size=64).digest())[:80]
    work_hash, item_nos = block.pc_hash(header, int(i["nonce2"]), anns)
    got = {"header_hash": h32(header).hex(), "ann0_b2b256": h32(anns[0]).hex(),
           "raw_item_nos_u64_hex": ["%016x" % n for n in item_nos],
           "ann_indexes": [n % len(anns) for n in item_nos],
           "selected_ann_hashes": [h32(anns[n % len(anns)]).hex() for n in item_nos],
           "pc_hash": work_hash.hex(), "pc_hash_as_le256_int_hex": work_hash[::-1].hex()}
    _compare(vector, got)


def check_announcement(vector: dict) -> None:
    i = vector["inputs"]
    raw = bytes.fromhex(i["ann"])
    got = {"ann_hash_H32": h32(raw).hex()}
    try:
        work_hash = validate(raw, bytes.fromhex(i["parent_block_hash_internal"]),
                             pcp_version=int(i.get("packetcrypt_version_at_that_height", 2)))
        got.update(valid=True, work_hash=work_hash.hex(), work_hash_as_le256_int_hex=work_hash[::-1].hex())
    except AnnValidationError as e:
        got.update(valid=False, error=e.reason.value)
    ann = Announcement.parse(raw)
    got["ann_soft_nonce_max"] = difficulty.soft_nonce_max(ann.work_bits)
    _compare(vector, got)


CHECKS = {
    "packetcrypt.cryptocycle": check_cryptocycle,
    "packetcrypt.difficulty": check_difficulty,
    "packetcrypt.ann_tree": check_ann_tree,
    "packetcrypt.block_pc_hash": check_block_pc_hash,
    "packetcrypt.synthetic_announcement": check_announcement,
    "packetcrypt.real_announcement": check_announcement,
    "packetcrypt.real_announcement_tampered": check_announcement,
}

try:        # RandGen/RandHash kinds live with the RandHash code
    from .randhash_vectors import CHECKS as _RANDHASH_CHECKS
except ImportError:
    _RANDHASH_CHECKS = {}
CHECKS.update({k: v for k, v in _RANDHASH_CHECKS.items() if k not in CHECKS})
