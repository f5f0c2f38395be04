"""A PacketCrypt pool and its miners (pkt-reference.md §5.10), on real HTTP between nodes of the mesh.

  work          what the parts exchange: the work format, share targets, the commitment placeholder, config.json
  paymaker      PPLNS over announcement and share events (pure)
  master        the master (config.json, work long polls, block templates) and the client its handlers use
  ann_handler   POST /submit of announcements, their checks and dedupe; the batches block miners download
  blk_handler   shares turned into blocks, checked against the share target, blocks to the chain node
  service       the pool node's service: the four parts on their ports, the paymaker behind HTTP
  http          the small synchronous HTTP client the miners use
  ann_miner     an announcement miner (faithful version-1 announcements, C accelerator where built)
  block_miner   a block miner: downloads announcements, builds the tree and commitment, mines, submits shares
"""
