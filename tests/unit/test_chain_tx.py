"""Transactions, headers and blocks in Bitcoin's wire format: known Bitcoin mainnet vectors, round trips, PKT
addresses, and decoders that answer random bytes with a DecodeError and nothing else."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from node.chain import blocks, params as P
from node.chain.chainstate import Chain
from node.chain.consensus import Reason, Rejected
from node.chain.interpreter import ScriptError, verify_input
from node.chain.keys import AddressError, Key, decode_address, encode_address
from node.chain.script import ScriptParseError, parse, p2sh
from node.chain.tx import OutPoint, Transaction, TxIn, TxOut
from node.chain.wire import DecodeError, Reader, hash_from_hex, hash_hex, sha256d, varint

# Bitcoin block 170: the first transaction between people (Satoshi to Hal Finney), spending the P2PK coinbase
# output of block 9. Both transactions and their ids are public; the signature uses the legacy SIGHASH_ALL digest.
HAL_TX = bytes.fromhex(
    "0100000001c997a5e56e104102fa209c6a852dd90660a20b2d9c352423edce25857fcd3704000000004847304402204e45e16932b8"
    "af514961a1d3a1a25fdf3f4f7732e9d624c6c61548ab5fb8cd410220181522ec8eca07de4860a4acdd12909d831cc56cbbac462208"
    "2221a8768d1d0901ffffffff0200ca9a3b00000000434104ae1a62fe09c5f51b13905f07f06b99a2f7159b2225f374cd378d71302f"
    "a28414e7aab37397f554a7df5f142c21c1b7303b8a0626f1baded5c72a704f7e6cd84cac00286bee0000000043410411db93e1dcdb"
    "8a016b49840f8c53bc1eb68a382e97b1482ecad7b148a6909a5cb2e0eaddfb84ccf9744464f82e160bfa9b8b64f9d4c03f999b8643f6"
    "56b412a3ac00000000")
BLOCK9_COINBASE = bytes.fromhex(
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0704ffff001d0134ffffffff01"
    "00f2052a0100000043410411db93e1dcdb8a016b49840f8c53bc1eb68a382e97b1482ecad7b148a6909a5cb2e0eaddfb84ccf97444"
    "64f82e160bfa9b8b64f9d4c03f999b8643f656b412a3ac00000000")
# Bitcoin's genesis header: its id 000000000019d6...e26f is double SHA-256 of these 80 bytes
BITCOIN_GENESIS_HEADER = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81b"
    "c3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c")


def test_known_txids():
    hal = Transaction.parse(HAL_TX)
    assert hal.txid_hex == "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"
    cb = Transaction.parse(BLOCK9_COINBASE)
    assert cb.txid_hex == "0437cd7f8525ceed2324359c2d0ba26006d92d856a9c20fa0241106ee5a597c9"
    assert cb.is_coinbase and not hal.is_coinbase
    assert hal.inputs[0].prevout == OutPoint(cb.txid, 0)
    assert hal.serialize() == HAL_TX and cb.serialize() == BLOCK9_COINBASE
    assert [o.value for o in hal.outputs] == [10 * 10 ** 8, 40 * 10 ** 8]


def test_real_signature_verifies_with_the_legacy_sighash():
    hal = Transaction.parse(HAL_TX)
    prev = Transaction.parse(BLOCK9_COINBASE).outputs[0].script_pubkey
    verify_input(hal, 0, prev)                                   # raises if the signature does not verify
    tampered = Transaction(hal.inputs, (TxOut(11 * 10 ** 8, hal.outputs[0].script_pubkey), hal.outputs[1]))
    with pytest.raises(ScriptError):
        verify_input(tampered, 0, prev)


def test_bitcoin_genesis_header_and_merkle():
    h = blocks.BlockHeader.parse(BITCOIN_GENESIS_HEADER)
    assert h.hash_hex == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert hash_hex(h.merkle_root) == "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    assert (h.time, h.bits, h.nonce) == (1231006505, 0x1D00FFFF, 2083236893)
    assert hash_from_hex(h.hash_hex) == h.hash
    assert h.serialize() == BITCOIN_GENESIS_HEADER
    assert blocks.merkle_root([h.merkle_root]) == h.merkle_root


def test_merkle_root_pairs_and_duplicates_the_odd_one():
    a, b, c = (sha256d(bytes([i])) for i in range(3))
    assert blocks.merkle_root([a, b]) == sha256d(a + b)
    assert blocks.merkle_root([a, b, c]) == sha256d(sha256d(a + b) + sha256d(c + c))


def test_varints_are_canonical():
    for n in (0, 0xFC, 0xFD, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000):
        r = Reader(varint(n))
        assert r.varint() == n and r.remaining == 0
    for bad in (b"\xfd\x10\x00", b"\xfe\xff\xff\x00\x00", b"\xff\x01\x00\x00\x00\x00\x00\x00\x00"):
        with pytest.raises(DecodeError, match="non-canonical"):
            Reader(bad).varint()


def test_transaction_round_trip_and_decode_errors():
    tx = Transaction((TxIn(OutPoint(b"\x01" * 32, 3), b"\x51", 7),), (TxOut(5, b"\x52"), TxOut(0, b"")),
                     version=2, lock_time=99)
    assert Transaction.parse(tx.serialize()) == tx
    with pytest.raises(DecodeError, match="trailing"):
        Transaction.parse(tx.serialize() + b"\x00")
    with pytest.raises(DecodeError, match="truncated"):
        Transaction.parse(tx.serialize()[:-1])
    with pytest.raises(DecodeError, match="witness"):
        Transaction.parse(bytes.fromhex("01000000") + b"\x00\x01" + b"\x00" * 10)
    with pytest.raises(DecodeError, match="count"):
        Transaction.parse(bytes.fromhex("01000000") + b"\xfe\xff\xff\xff\x7f")


def test_block_round_trip_and_genesis(tmp_path):
    params = P.regtest()
    g = blocks.genesis_block(params)
    assert blocks.Block.parse(g.raw) == g and g.proof is None
    assert blocks.coinbase_height(g.txs[0]) == 0
    chain = Chain(tmp_path, params)
    assert chain.tip.hash == g.hash and chain.height == 0
    assert chain.get_block(g.hash) == g
    chain.close()
    assert blocks.genesis_block(P.MAINNET).hash != g.hash       # the parameters are part of the chain


@pytest.mark.parametrize("height", [0, 1, 16, 17, 127, 128, 255, 256, 32767, 32768, 8_388_607, 8_388_608,
                                    2 ** 31 - 1])
def test_bip34_height_round_trip(height):
    cb = blocks.coinbase_tx(height, [TxOut(1, b"\x51")], b"extra nonce")
    assert blocks.coinbase_height(cb) == height
    assert 2 <= len(cb.inputs[0].script_sig) <= 100


def test_addresses():
    k = Key.from_seed("address test")
    addr = k.address
    assert addr.startswith("p")
    assert decode_address(addr) == k.p2pkh_script
    assert encode_address(k.p2pkh_script) == addr
    sh = p2sh(b"\x51")
    assert decode_address(encode_address(sh)) == sh
    assert Key.from_wif(k.wif()).secret == k.secret
    for bad in ("", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", addr[:-1] + ("1" if addr[-1] != "1" else "2")):
        with pytest.raises(AddressError):
            decode_address(bad)


# --- decoders given random bytes -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_transaction(data):
    try:
        tx = Transaction.parse(data)
    except DecodeError:
        return
    assert tx.serialize() == data


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_header(data):
    try:
        h = blocks.BlockHeader.parse(data)
    except DecodeError:
        return
    assert h.serialize() == data


@FUZZ
@given(st.binary(max_size=5000))
def test_random_bytes_block(data):
    try:
        b = blocks.Block.parse(data)
    except DecodeError:
        return
    assert b.serialize() == data


@FUZZ
@given(st.binary(min_size=80, max_size=80), st.binary(max_size=5000))
def test_random_proof_and_transactions_after_a_header(header, rest):
    try:
        blocks.Block.parse(header + rest)
    except DecodeError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_script(data):
    try:
        ops = parse(data)
    except ScriptParseError:
        return
    assert b"".join(p.raw for p in ops) == data


@pytest.fixture(scope="module")
def fuzz_chain(tmp_path_factory):
    chain = Chain(tmp_path_factory.mktemp("fuzz"), P.regtest())
    yield chain
    chain.close()


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash_the_chain(fuzz_chain, data):
    r = fuzz_chain.process_block(data, 0)
    assert r.status in ("rejected", "orphan")
    try:
        fuzz_chain.accept_tx(data, 0)
    except Rejected as e:
        assert isinstance(e.reason, Reason)
    assert fuzz_chain.height == 0


_PLAUSIBLE = {}


def _plausible_block(chain):
    if chain not in _PLAUSIBLE:
        _PLAUSIBLE[chain] = _make_plausible_block(chain)
    return _PLAUSIBLE[chain]


def _make_plausible_block(chain):
    """A block on genesis that passes every check before the proof, with announcements of random bytes."""
    import random
    from node.chain.packetcrypt.ann_tree import CoinbaseCommitment
    from node.chain.packetcrypt.block import PacketCryptProof
    rnd = random.Random(7)
    anns = []
    for _ in range(4):
        ann = bytearray(rnd.getrandbits(8) for _ in range(1024))
        ann[0], ann[8:16], ann[56:88] = 1, bytes.fromhex("0000022000000000"), bytes(32)   # v1, parent 0, unsigned
        anns.append(bytes(ann))
    commit = CoinbaseCommitment(0x207FFFFF, bytes(32), 4)
    p = chain.params
    cb = blocks.coinbase_tx(1, [TxOut(p.subsidy(1) - p.steward_payout(1), b"\x51"),
                                TxOut(p.steward_payout(1), p.initial_steward_script), TxOut(0, commit.script())])
    header = blocks.BlockHeader(1, chain.tip.hash, blocks.merkle_root([cb.txid]), chain.tip.time + 20,
                                chain.next_bits(chain.tip.time + 20))
    from node.chain import consensus
    for nonce2 in range(200):                   # one whose work hash meets the target: the anns get checked
        block = blocks.Block(header, (cb,), PacketCryptProof(nonce2, anns, bytes(40)))
        try:
            consensus.check_proof(block, 1, p, lambda h: chain.block_hash_at(h) if h < 1 else None)
        except Rejected as e:
            if e.reason is not Reason.BAD_POW:
                return block
    raise AssertionError("no nonce2 met the target")


@FUZZ
@given(st.data())
def test_mutated_blocks_never_crash_the_chain(fuzz_chain, data):
    raw = bytearray(_plausible_block(fuzz_chain).raw)
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[:data.draw(st.integers(0, len(raw)))]
    r = fuzz_chain.process_block(bytes(raw), fuzz_chain.tip.time + 100)
    # "duplicate": an earlier example left an orphan with the same header (the proof is not in the block id)
    assert r.status in ("rejected", "orphan", "duplicate") and isinstance(r.reason, (Reason, type(None)))
    assert fuzz_chain.height == 0


def test_plausible_block_reaches_the_announcement_checks(fuzz_chain):
    r = fuzz_chain.process_block(_plausible_block(fuzz_chain), fuzz_chain.tip.time + 100)
    assert r.reason is Reason.BAD_ANN, r.detail
