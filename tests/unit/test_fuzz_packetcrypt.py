"""Fuzz: PacketCrypt announcements and block proofs from the network, decoded and validated.

Mined (fast-mode, testbed rules) announcements and a mined block proof are mutated, and the block header's
fields too. Must hold: announcement validation raises only AnnValidationError (and accepts only what meets its
target); the PacketCryptProof decoder raises only PcpFormatError and its encoding round-trips; block proof
validation of whatever decoded raises only BlockValidationError (and the header length check's ValueError)."""
import struct

import nacl.signing
import pytest
from hypothesis import strategies as st

from node.chain.packetcrypt import announcement as A
from node.chain.packetcrypt import block as B
from node.chain.packetcrypt import difficulty
from node.chain.packetcrypt.ann_tree import CommitmentError, CoinbaseCommitment
from node.chain.packetcrypt.hashing import h32

from fuzzing import harness
from test_fuzz_cryptoauth import mutate, mutation

CHAIN = [h32(b"fuzz block %d" % i) for i in range(40)]
HEIGHT, PARENT_HEIGHT, ANN_BITS = 12, 8, 0x2000FFFF
SIGNER = nacl.signing.SigningKey(h32(b"fuzz ann signer"))


def mined():
    anns = [A.mine(CHAIN[PARENT_HEIGHT], PARENT_HEIGHT, ANN_BITS, hard_nonce=k, fast_depth=3,
                   signing_key=SIGNER.verify_key.encode() if k == 1 else bytes(32)).pack() for k in range(6)]
    ann_set = B.BlockAnnSet.build(anns, HEIGHT)
    header = bytearray(h32(b"fuzz hdr") + h32(b"fuzz hdr2") + bytes(16))
    struct.pack_into("<I", header, 72, 0x207FFFFF)
    header = bytes(header)
    solution = B.mine_block(header, ann_set, ann_set.effective_target(B.header_bits(header)))
    pcp = B.make_proof(ann_set, solution, {SIGNER.verify_key.encode(): SIGNER})
    return anns, ann_set, header, pcp


ANNS, ANN_SET, HEADER, PCP = mined()
PROOF = PCP.encode()


@harness(st.tuples(st.sampled_from(ANNS), st.lists(mutation, max_size=3)), ci=500)
def test_fuzz_packetcrypt_announcement(case):
    raw, change = case
    data = mutate(raw, change)
    try:
        work = A.validate(data, CHAIN[PARENT_HEIGHT], min_v1_parent_height=0, allow_fast=True)
    except A.AnnValidationError:
        return
    assert difficulty.hash_meets_target(work, A.Announcement.parse(data).work_bits)


header_change = st.one_of(st.none(), st.tuples(st.just("bits"), st.integers(0, 2**32 - 1)),
                          st.tuples(st.just("bytes"), st.lists(mutation, max_size=2)))


def block_inputs(proof_change, header_spec, commitment_change):
    data = mutate(PROOF, proof_change)
    header = HEADER
    if header_spec and header_spec[0] == "bits":
        header = HEADER[:72] + struct.pack("<I", header_spec[1]) + HEADER[76:]
    elif header_spec:
        header = mutate(HEADER, header_spec[1])
    return data, header, mutate(ANN_SET.commitment.pack(), commitment_change)


@harness(st.tuples(st.lists(mutation, max_size=3), header_change, st.lists(mutation, max_size=1)), ci=500)
def test_fuzz_packetcrypt_block_proof(case):
    data, header, commitment = block_inputs(*case)
    try:
        pcp, used = B.PacketCryptProof.decode(data)
    except B.PcpFormatError:
        return
    assert B.PacketCryptProof.decode(pcp.encode())[0] == pcp
    try:
        CoinbaseCommitment.parse(commitment)
    except CommitmentError:
        pass
    try:
        B.validate_block_proof(header, pcp, commitment, HEIGHT, lambda h: CHAIN[h] if 0 <= h < len(CHAIN) else None,
                               rules=B.TESTBED_FAST)
    except B.BlockValidationError:
        pass
    except ValueError as e:
        assert len(header) != B.HEADER_SIZE, e


def test_header_bits_of_a_negative_target_are_a_validation_error():
    """A block header from the network with compact bits 0x01810000 (the target -1) reaches the difficulty code."""
    data, header, commitment = block_inputs([], ("bits", 0x01810000), [])
    pcp, _ = B.PacketCryptProof.decode(data)
    with pytest.raises(B.BlockValidationError):
        B.validate_block_proof(header, pcp, commitment, HEIGHT, CHAIN.__getitem__, rules=B.TESTBED_FAST)
