"""Consensus checks for headers, blocks and transactions, each failure a `Rejected` with a `Reason`.

Order (pktd `blockchain/validate.go`, `accept.go`; pkt-reference.md §5.8):
  1. header sanity: bits a positive target not above the pow limit (BAD_BITS), time at most max_future_seconds
     ahead of the caller's clock (TIME_TOO_NEW);
  2. block sanity: a PacketCrypt proof present, transactions, exactly one coinbase first, transaction sanity,
     merkle root, no duplicate transactions, size;
  3. header context: bits as the retarget requires (BAD_DIFFICULTY), time above the median of the last 111
     (TIME_TOO_OLD);
  4. block context: BIP34 height in the coinbase (BAD_HEIGHT), final transactions;
  5. the PacketCrypt proof with node/chain/packetcrypt's validator in §5.8's order (announcement parents looked
     up on the block's own branch, signatures, commitment, work, each announcement, the tree proof);
  6. connect: inputs exist and are unspent, coinbase maturity, steward burn, amounts, fees; the election; the
     coinbase pays at most subsidy + fees and EXACTLY subsidy*51/256 to the parent's steward; then the scripts.
The PacketCrypt rules (and whether fast-mode announcements are accepted) come from ChainParams.pc_rules.
"""
from __future__ import annotations

import enum
from typing import Callable

from . import election
from .blocks import Block, BlockHeader, coinbase_height
from .coins import Coin, CoinView
from .interpreter import SIGNATURE_REASONS, ScriptError, TxChecker, verify_script
from .packetcrypt import block as pc_block
from .packetcrypt import difficulty
from .packetcrypt.announcement import Announcement, AnnValidationError
from .params import ChainParams
from .retarget import HeaderInfo, median_time_past, next_bits
from .script import LOCKTIME_THRESHOLD
from .tx import OutPoint, SEQUENCE_FINAL, Transaction


class Reason(enum.Enum):
    MALFORMED = "MALFORMED"                      # bytes that do not decode
    # header
    BAD_BITS = "BAD_BITS"
    BAD_DIFFICULTY = "BAD_DIFFICULTY"
    TIME_TOO_OLD = "TIME_TOO_OLD"
    TIME_TOO_NEW = "TIME_TOO_NEW"
    INVALID_PARENT = "INVALID_PARENT"
    # block structure
    MISSING_PROOF = "MISSING_PROOF"
    NO_TRANSACTIONS = "NO_TRANSACTIONS"
    BAD_COINBASE = "BAD_COINBASE"
    BAD_MERKLE_ROOT = "BAD_MERKLE_ROOT"
    BLOCK_TOO_BIG = "BLOCK_TOO_BIG"
    DUPLICATE_TX = "DUPLICATE_TX"
    BAD_HEIGHT = "BAD_HEIGHT"
    # PacketCrypt proof
    BAD_PCP_VERSION = "BAD_PCP_VERSION"
    ANN_PARENT_UNKNOWN = "ANN_PARENT_UNKNOWN"    # an announcement's parent block is not on this branch
    BAD_ANN_SIGNATURE = "BAD_ANN_SIGNATURE"
    BAD_CONTENT_PROOF = "BAD_CONTENT_PROOF"
    BAD_COMMITMENT = "BAD_COMMITMENT"
    BAD_POW = "BAD_POW"
    BAD_ANN = "BAD_ANN"
    ANN_IMMATURE = "ANN_IMMATURE"                # fewer than 3 blocks since the announcement's parent
    ANN_TARGET_ABOVE_COMMITMENT = "ANN_TARGET_ABOVE_COMMITMENT"
    BAD_ANN_PROOF = "BAD_ANN_PROOF"
    # transactions
    BAD_TX = "BAD_TX"
    NON_FINAL = "NON_FINAL"
    MISSING_INPUT = "MISSING_INPUT"              # does not exist or was spent before this block
    DOUBLE_SPEND = "DOUBLE_SPEND"                # spent twice in one block, one transaction or the mempool
    IMMATURE_SPEND = "IMMATURE_SPEND"
    STEWARD_BURNED = "STEWARD_BURNED"
    BAD_AMOUNT = "BAD_AMOUNT"
    SPEND_TOO_HIGH = "SPEND_TOO_HIGH"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    SCRIPT_FAILED = "SCRIPT_FAILED"
    # coinbase economics
    WRONG_SUBSIDY = "WRONG_SUBSIDY"
    WRONG_STEWARD_OUTPUT = "WRONG_STEWARD_OUTPUT"
    # mempool policy
    ALREADY_KNOWN = "ALREADY_KNOWN"
    FEE_TOO_LOW = "FEE_TOO_LOW"


class Rejected(Exception):
    """A header, block or transaction that breaks a rule; `reason` says which (count it), `detail` explains."""

    def __init__(self, reason: Reason, detail: str = ""):
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


# --- transactions --------------------------------------------------------------------------------------------------

def check_tx_sanity(tx: Transaction, params: ChainParams) -> None:
    """CheckTransactionSanity: shape, amounts, duplicate inputs, coinbase script length, null prevouts."""
    if not tx.inputs:
        raise Rejected(Reason.BAD_TX, "transaction has no inputs")
    if not tx.outputs:
        raise Rejected(Reason.BAD_TX, "transaction has no outputs")
    if tx.size > params.max_block_size:
        raise Rejected(Reason.BAD_TX, f"transaction of {tx.size} bytes")
    total = 0
    for i, out in enumerate(tx.outputs):
        if not 0 <= out.value <= params.max_money:
            raise Rejected(Reason.BAD_AMOUNT, f"output {i} value {out.value}")
        total += out.value
        if total > params.max_money:
            raise Rejected(Reason.BAD_AMOUNT, "outputs add up to more than the money supply")
    prevouts = [i.prevout for i in tx.inputs]
    if len(set(prevouts)) != len(prevouts):
        raise Rejected(Reason.DOUBLE_SPEND, f"transaction {tx.txid_hex} spends an output twice")
    if tx.is_coinbase:
        if not 2 <= len(tx.inputs[0].script_sig) <= 100:
            raise Rejected(Reason.BAD_COINBASE, "coinbase script must be 2..100 bytes")
    elif any(p.is_null for p in prevouts):
        raise Rejected(Reason.BAD_TX, "null previous output in a non-coinbase transaction")


def is_final(tx: Transaction, height: int, block_time: int) -> bool:
    """IsFinalizedTransaction: lock time 0, or below the height/time it names, or every input sequence final."""
    if tx.lock_time == 0:
        return True
    limit = height if tx.lock_time < LOCKTIME_THRESHOLD else block_time
    return tx.lock_time < limit or all(i.sequence == SEQUENCE_FINAL for i in tx.inputs)


def check_tx_inputs(tx: Transaction, height: int, view: CoinView, params: ChainParams) -> int:
    """CheckTransactionInputs for a non-coinbase transaction mined at `height`; returns its fee."""
    total_in = 0
    for i, txin in enumerate(tx.inputs):
        coin = view.get_coin(txin.prevout)
        if coin is None:
            if view.spent_here(txin.prevout):
                raise Rejected(Reason.DOUBLE_SPEND, f"{txin.prevout} is spent twice")
            raise Rejected(Reason.MISSING_INPUT, f"{txin.prevout} does not exist or is already spent")
        if coin.coinbase:
            age = height - coin.height
            if age < params.coinbase_maturity:
                raise Rejected(Reason.IMMATURE_SPEND, f"coinbase output {txin.prevout} from height {coin.height} "
                               f"spent at {height}, maturity {params.coinbase_maturity}")
            if coin.steward and age > params.steward_burn_depth:
                raise Rejected(Reason.STEWARD_BURNED, f"steward payment {txin.prevout} from height {coin.height} "
                               f"is older than {params.steward_burn_depth} blocks")
        if not 0 <= coin.value <= params.max_money:
            raise Rejected(Reason.BAD_AMOUNT, f"input {i} value {coin.value}")
        total_in += coin.value
        if total_in > params.max_money:
            raise Rejected(Reason.BAD_AMOUNT, "inputs add up to more than the money supply")
    total_out = sum(o.value for o in tx.outputs)
    if total_in < total_out:
        raise Rejected(Reason.SPEND_TOO_HIGH, f"transaction {tx.txid_hex} spends {total_out} of {total_in}")
    return total_in - total_out


def check_tx_scripts(tx: Transaction, coins: list[Coin]) -> None:
    """Run every input's script against the coin it spends (coins in input order)."""
    for i, coin in enumerate(coins):
        checker = TxChecker(tx, i)
        try:
            verify_script(tx.inputs[i].script_sig, coin.script, checker)
        except ScriptError as e:
            bad_sig = checker.failed_signatures or e.reason in SIGNATURE_REASONS
            reason = Reason.BAD_SIGNATURE if bad_sig else Reason.SCRIPT_FAILED
            raise Rejected(reason, f"transaction {tx.txid_hex} input {i}: {e}") from None


# --- headers and blocks -------------------------------------------------------------------------------------------

def check_header_sanity(header: BlockHeader, params: ChainParams, now: int) -> None:
    target = difficulty.compact_to_big(header.bits)
    if target <= 0:
        raise Rejected(Reason.BAD_BITS, f"bits 0x{header.bits:08x} are not a positive target")
    if target > params.pow_limit:
        raise Rejected(Reason.BAD_BITS, f"bits 0x{header.bits:08x} are easier than the pow limit "
                       f"0x{params.pow_limit_bits:08x}")
    if header.time > now + params.max_future_seconds:
        raise Rejected(Reason.TIME_TOO_NEW, f"block time {header.time} is more than {params.max_future_seconds} s "
                       f"after {now}")


def check_block_sanity(block: Block, params: ChainParams, now: int) -> None:
    """Context-free checks (checkBlockSanity), the header's included."""
    check_header_sanity(block.header, params, now)
    if block.proof is None:
        raise Rejected(Reason.MISSING_PROOF, "block carries no PacketCrypt proof")
    if not block.txs:
        raise Rejected(Reason.NO_TRANSACTIONS)
    tx_bytes = sum(t.size for t in block.txs)
    if tx_bytes > params.max_block_size:          # the transactions; header and proof are not counted
        raise Rejected(Reason.BLOCK_TOO_BIG, f"transactions of {tx_bytes} bytes")
    if not block.txs[0].is_coinbase:
        raise Rejected(Reason.BAD_COINBASE, "first transaction is not a coinbase")
    if any(t.is_coinbase for t in block.txs[1:]):
        raise Rejected(Reason.BAD_COINBASE, "more than one coinbase")
    for t in block.txs:
        check_tx_sanity(t, params)
    if block.computed_merkle_root() != block.header.merkle_root:
        raise Rejected(Reason.BAD_MERKLE_ROOT)
    txids = [t.txid for t in block.txs]
    if len(set(txids)) != len(txids):
        raise Rejected(Reason.DUPLICATE_TX)


def check_header_context(header: BlockHeader, parent: HeaderInfo, params: ChainParams,
                         ancestor: Callable[[int], HeaderInfo]) -> None:
    want = next_bits(params, parent, header.time, ancestor)
    if header.bits != want:
        raise Rejected(Reason.BAD_DIFFICULTY, f"bits 0x{header.bits:08x}, the chain requires 0x{want:08x}")
    mtp = median_time_past(params, parent, ancestor)
    if header.time <= mtp:
        raise Rejected(Reason.TIME_TOO_OLD, f"block time {header.time} is not after the median time past {mtp}")


def check_block_context(block: Block, height: int) -> None:
    got = coinbase_height(block.txs[0])
    if got != height:
        raise Rejected(Reason.BAD_HEIGHT, f"coinbase says height {got}, block is at {height}")
    for t in block.txs:
        if not is_final(t, height, block.header.time):
            raise Rejected(Reason.NON_FINAL, f"transaction {t.txid_hex} is locked until {t.lock_time}")


_PC_REASONS = {
    pc_block.BlockReason.PCP_VERSION_NOT_ALLOWED: Reason.BAD_PCP_VERSION,
    pc_block.BlockReason.BAD_PARENT_HEIGHT: Reason.ANN_PARENT_UNKNOWN,
    pc_block.BlockReason.UNKNOWN_PARENT: Reason.ANN_PARENT_UNKNOWN,
    pc_block.BlockReason.MISSING_SIGNATURE: Reason.BAD_ANN_SIGNATURE,
    pc_block.BlockReason.BAD_SIGNATURE: Reason.BAD_ANN_SIGNATURE,
    pc_block.BlockReason.BAD_CONTENT_PROOF: Reason.BAD_CONTENT_PROOF,
    pc_block.BlockReason.BAD_COINBASE: Reason.BAD_COMMITMENT,
    pc_block.BlockReason.INSUF_POW: Reason.BAD_POW,
    pc_block.BlockReason.BAD_ANN: Reason.BAD_ANN,
    pc_block.BlockReason.ANN_INSUF_POW: Reason.ANN_TARGET_ABOVE_COMMITMENT,
    pc_block.BlockReason.PCP_INVAL: Reason.BAD_ANN_PROOF,
    pc_block.BlockReason.PCP_MISMATCH: Reason.BAD_ANN_PROOF,
}


def check_proof(block: Block, height: int, params: ChainParams,
                get_block_hash: Callable[[int], bytes | None]) -> bytes:
    """The PacketCrypt proof (§5.8) with the project's faithful validator; returns the work hash.
    `get_block_hash(h)` answers for heights below `height` on the block's own branch, else None."""
    try:
        commitment = block.commitment().pack()
    except ValueError:
        commitment = b""          # the validator reports a missing commitment at its step 6
    try:
        _, work_hash = pc_block.validate_block_proof(block.header.serialize(), block.proof, commitment, height,
                                                     get_block_hash, rules=params.pc_rules)
    except pc_block.BlockValidationError as e:
        reason = _PC_REASONS[e.reason]
        if e.reason is pc_block.BlockReason.ANN_INSUF_POW and _has_immature_ann(block, height):
            reason = Reason.ANN_IMMATURE
        raise Rejected(reason, str(e)) from None
    except (AnnValidationError, ValueError) as e:            # announcements that do not even parse
        raise Rejected(Reason.BAD_ANN, str(e)) from None
    return work_hash


def _has_immature_ann(block: Block, height: int) -> bool:
    return height >= difficulty.ANN_WAIT_PERIOD and any(
        height - Announcement.parse(a).parent_block_height < difficulty.ANN_WAIT_PERIOD for a in block.proof.anns)


# --- connecting a block -------------------------------------------------------------------------------------------

def connect_block(block: Block, height: int, view: CoinView, params: ChainParams,
                  parent_election: election.ElectionState, utxo_ballots) -> tuple[election.ElectionState,
                                                                                  list[tuple[OutPoint, Coin]]]:
    """checkConnectBlock: spend and add every transaction's outputs in `view`, check amounts, the election and the
    coinbase, then the scripts. Returns the new election state and the spent coins in order (the undo data).
    `utxo_ballots()` yields (pkScript, value) of the unspent outputs before this block that vote."""
    spent: list[tuple[OutPoint, Coin]] = []
    fees = 0
    for t in block.txs:
        if not t.is_coinbase:
            fees += check_tx_inputs(t, height, view, params)
            spent.extend((i.prevout, view.spend(i.prevout)) for i in t.inputs)
        view.add_tx(t, height, params)
    new_election = election.process_block(
        parent_election, ((c.script, c.value, s) for _, c, s in view.changes()), height, params, utxo_ballots)

    coinbase = block.txs[0]
    subsidy = params.subsidy(height)
    paid = sum(o.value for o in coinbase.outputs)
    if paid > subsidy + fees:
        raise Rejected(Reason.WRONG_SUBSIDY, f"coinbase pays {paid}, at most {subsidy + fees} "
                       f"(subsidy {subsidy} + fees {fees}) allowed")
    payout = params.steward_payout(height)
    if not any(o.script_pubkey == parent_election.steward and o.value == payout for o in coinbase.outputs):
        raise Rejected(Reason.WRONG_STEWARD_OUTPUT, f"no output pays exactly {payout} to the steward "
                       f"{parent_election.steward.hex()}")

    at = 0
    for t in block.txs[1:]:
        coins = [c for _, c in spent[at:at + len(t.inputs)]]
        at += len(t.inputs)
        check_tx_scripts(t, coins)
    return new_election, spent
