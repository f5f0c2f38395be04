"""Cross-chain settlement (issue 19 item 4) between PKT chain instances: pure protocol code, the chains and the
clock passed in; the testbed drives it (testbed/xchain.py).

  watch       ChainWatch: one chain's main chain, block by block, for the HTLC outputs of transfers (funded,
              redeemed with which preimage, refunded)
  settlement  Transfer plans (legs, amounts, decreasing refund heights), the parties' rules, the transactions,
              and a transfer's outcome (committed on every chain, refunded on every one, or half: the bug)
"""
