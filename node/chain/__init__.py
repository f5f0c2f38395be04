"""The PKT chain: consensus core, store and mining driver (pkt-reference.md §5, §6), beside packetcrypt/.

Modules, from the bottom up (pure code, the clock passed in; only store does I/O):
  params       ChainParams: PKT economics and consensus numbers, the time scale, describe(); regtest()
  wire         strict Reader (DecodeError), varints, hashes
  script       opcodes, parsing, templates (p2pkh, p2pk, multisig, p2sh, HTLC, OP_VOTE suffix), votes()
  interpreter  the script interpreter (coincurve ECDSA, BIP66, BIP65, BIP16)
  tx           transactions in Bitcoin's wire format, legacy signature hash
  keys         secp256k1 keys, PKT addresses
  blocks       80-byte header, block with PacketCryptProof, merkle root, BIP34, genesis
  coins        UTXO entries and views; election (the steward vote); retarget (difficulty, median time)
  consensus    every check with a Reason; connect_block
  store        the SQLite store; mempool; chainstate (Chain: index, best chain, reorgs, orphans)
  mining       templates, the block miner's announcement choice, the mining driver, starting difficulty
  wallet       balance, signed sends, votes, multisig and HTLC spends
"""
