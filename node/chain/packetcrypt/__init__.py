"""PacketCrypt: the PKT proof of work (pkt-reference.md §5).

Modules: hashing (H32/H64/expand), cryptocycle (the 2048-byte ChaCha20-Poly1305 state), randgen/randhash
(random programs and table items), difficulty (targets, work, aging), announcement (1024-byte announcements:
mining and validation), ann_tree (the block's announcement tree, proof and coinbase commitment), block (block
PacketCrypt hash, miner, PacketCryptProof codec and block proof validation), vectors (conformance checks).
"""
