"""Chain parameters: PKT's economics and consensus numbers (pkt-reference.md §6; pktd `chaincfg/params.go`,
`blockchain/validate.go`) and the time scale a testbed run shrinks them with.

The defaults are mainnet's numbers. A testbed shrinks wall-clock and block-count lengths with `time_scaled(...)`
(block time, retarget window, steward burn depth, coinbase maturity, the lock length wallets use); the subsidy
schedule and the steward share are never scaled. Every result should print `describe()`: the values in force.

Economics (pktd):
  subsidy(h)        = floor(9^p * 4166 * 2^30 / 10^p), p = h // 144000          (-10 % every 144000 blocks)
  steward payout    = subsidy * 51 // 256 (exactly; 829.9453125 PKT in period 0)
  total money(h)    = PktCalcTotalMoney: the subsidies of blocks 0 .. h-1
  steward burn      = a coinbase output whose value equals the steward payout of its height cannot be spent
                      more than `steward_burn_depth` blocks after it was created

Genesis: pktlab chains start from a genesis of their own (blocks.genesis_block): the real PKT genesis carries no
PacketCrypt proof we could check and pays a segwit steward script this chain does not use. The initial Network
Steward is a 3-of-5 multisig behind pay-to-script-hash, its five keys derived from published seeds (STEWARD_SEEDS),
as the real steward's seeds were published when it concluded. PacketCrypt runs the rules mainnet applies today
from genesis on (PcP v2, version-1 announcements; node/chain/packetcrypt/block.py TESTBED); fast-mode
announcements are accepted only when `allow_fast_anns` is set, which only test parameters do.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from . import script as S
from .keys import Key
from .packetcrypt import block as pc_block
from .packetcrypt import difficulty

UNITS_PER_PKT = 1 << 30
STEWARD_SEEDS = tuple(f"pktlab network steward {i}" for i in range(1, 6))
MAINNET_POW_LIMIT = 0x1F0FFFFF
REGTEST_POW_LIMIT = 0x207FFFFF          # the easiest target any PacketCrypt rule accepts


def steward_keys() -> list[Key]:
    return [Key.from_seed(s) for s in STEWARD_SEEDS]


def steward_redeem_script() -> bytes:
    """The initial steward's 3-of-5 multisig (the redeem script behind its P2SH output)."""
    return S.multisig(3, [k.pubkey for k in steward_keys()])


def _default_steward_script() -> bytes:
    return S.p2sh(steward_redeem_script())


@dataclass(frozen=True)
class ChainParams:
    name: str = "pkt"
    # economics (never scaled)
    units_per_coin: int = UNITS_PER_PKT
    initial_subsidy_pkt: int = 4166
    subsidy_period: int = 144000                   # blocks per -10 % step
    max_money: int = UNITS_PER_PKT * 6_000_000_000
    steward_share: tuple[int, int] = (51, 256)
    # lengths a time scale may shrink
    target_block_time: int = 60                    # seconds
    retarget_interval: int = 2016                  # blocks
    steward_burn_depth: int = 129600               # blocks
    coinbase_maturity: int = 100                   # blocks
    lock_blocks: int = 1440                        # default HTLC refund lock for wallets (one day of blocks)
    # difficulty
    retarget_clamp: int = 4
    pow_limit_bits: int = MAINNET_POW_LIMIT
    genesis_bits: int | None = None                # starting difficulty; None = the pow limit
    min_diff_reduction_until: int = 50000          # pktd: below this height, 2 block times without a block
    #                                                allow a block at the pow limit
    # time
    median_time_blocks: int = 111
    max_future_seconds: int = 720
    genesis_time: int = 1_700_000_000
    # network and addresses
    net_magic: int = 0x082F00FC
    default_port: int = 64764
    max_block_size: int = 1_000_000
    # Network Steward and PacketCrypt
    initial_steward_script: bytes = field(default_factory=_default_steward_script)
    pc_rules: pc_block.ChainRules = pc_block.TESTBED

    # --- economics -------------------------------------------------------------------------------------------
    def subsidy_for_period(self, period: int) -> int:
        return 9 ** period * self.initial_subsidy_pkt * self.units_per_coin // 10 ** period

    def subsidy(self, height: int) -> int:
        """New money in the block at `height` (pktd pktCalcBlockSubsidy)."""
        return self.subsidy_for_period(height // self.subsidy_period)

    def steward_payout(self, height: int) -> int:
        """The exact value the coinbase at `height` must pay the current Network Steward."""
        num, den = self.steward_share
        return self.subsidy(height) * num // den

    def total_money(self, height: int) -> int:
        """PktCalcTotalMoney(height): all coins mined by blocks 0 .. height-1."""
        periods, rest = divmod(height, self.subsidy_period)
        return sum(self.subsidy_for_period(p) * self.subsidy_period for p in range(periods)) + \
            self.subsidy_for_period(periods) * rest

    # --- difficulty ------------------------------------------------------------------------------------------
    @property
    def pow_limit(self) -> int:
        return difficulty.compact_to_big(self.pow_limit_bits)

    @property
    def starting_bits(self) -> int:
        return self.pow_limit_bits if self.genesis_bits is None else self.genesis_bits

    @property
    def target_timespan(self) -> int:
        """Seconds a retarget window should take (1.4 days on mainnet)."""
        return self.retarget_interval * self.target_block_time

    @property
    def min_diff_reduction_time(self) -> int:
        return 2 * self.target_block_time

    # --- time scale ------------------------------------------------------------------------------------------
    def time_scaled(self, *, block_time: int | None = None, retarget_interval: int | None = None,
                    burn_depth: int | None = None, maturity: int | None = None, lock_blocks: int | None = None,
                    **other) -> "ChainParams":
        """A copy with shorter lengths; anything not given keeps its value. `other` sets any further field."""
        changes = {k: v for k, v in (("target_block_time", block_time), ("retarget_interval", retarget_interval),
                                     ("steward_burn_depth", burn_depth), ("coinbase_maturity", maturity),
                                     ("lock_blocks", lock_blocks)) if v is not None}
        changes.update(other)
        for key in ("target_block_time", "retarget_interval", "steward_burn_depth", "coinbase_maturity",
                    "lock_blocks"):
            if key in changes and (isinstance(changes[key], bool) or not isinstance(changes[key], int)
                                   or changes[key] < 1):
                raise ValueError(f"{key} must be a positive whole number, got {changes[key]!r}")
        return replace(self, **changes)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["initial_steward_script"] = self.initial_steward_script.hex()
        d["pc_rules"] = asdict(self.pc_rules)
        d["steward_share"] = f"{self.steward_share[0]}/{self.steward_share[1]}"
        d["subsidy_period0_units"] = self.subsidy(0)
        d["steward_payout_period0_units"] = self.steward_payout(0)
        d["target_timespan"] = self.target_timespan
        d["starting_bits"] = f"0x{self.starting_bits:08x}"
        d["pow_limit_bits"] = f"0x{self.pow_limit_bits:08x}"
        d["genesis_bits"] = None if self.genesis_bits is None else f"0x{self.genesis_bits:08x}"
        d["net_magic"] = f"0x{self.net_magic:08x}"
        return d

    def describe(self) -> str:
        """The parameters in force, one `name = value` per line (print this with every result)."""
        mainnet = MAINNET.as_dict()
        lines = []
        for k, v in self.as_dict().items():
            mark = "" if mainnet.get(k) == v else "   (mainnet: %s)" % (mainnet.get(k),)
            lines.append(f"{k} = {v}{mark}")
        return "\n".join(lines)


MAINNET = ChainParams()


# A run's chain in its config form: these lengths (the time scale), its genesis time and starting difficulty.
RUN_LENGTHS = {"block_time": "target_block_time", "retarget_interval": "retarget_interval",
               "burn_depth": "steward_burn_depth", "maturity": "coinbase_maturity", "lock_blocks": "lock_blocks"}


def scaled_lengths(time_scale: float) -> dict:
    """Mainnet's lengths divided by `time_scale` (each at least 1, rounded): block_time 60/F s, retarget
    2016/F blocks, burn depth 129600/F, maturity 100/F, lock 1440/F."""
    if not isinstance(time_scale, (int, float)) or isinstance(time_scale, bool) or not 1 <= time_scale <= 1e6:
        raise ValueError(f"time scale must be a number from 1 to 1000000, got {time_scale!r}")
    return {key: max(1, round(getattr(MAINNET, field) / time_scale)) for key, field in RUN_LENGTHS.items()}


NETWORK_FIELDS = {"net_magic": "net_magic", "port": "default_port"}   # a chain instance's own network (config form)


def for_run(config: dict) -> ChainParams:
    """The parameters of a testbed run's chain from its config form: {"block_time", "retarget_interval",
    "burn_depth", "maturity", "lock_blocks" (each optional, mainnet's when absent), "genesis_time",
    "genesis_bits", "net_magic" and "port" (a chain instance's own network: the P2P magic and port, RPC on port + 1;
    mainnet's when absent)}. Like regtest: the pow limit 0x207fffff (a run's slow block miners need easy targets), no
    min-difficulty rule (a block at the pow limit after 2 block times would make every interval at most two
    block times), faithful announcements. Raises ValueError naming a bad field."""
    known = set(RUN_LENGTHS) | {"genesis_time", "genesis_bits"} | set(NETWORK_FIELDS)
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"chain parameters: unknown field(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(known))})")
    changes = {}
    for key in ("genesis_time", "genesis_bits"):
        v = config.get(key)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 1 << 32:
                raise ValueError(f"chain parameters: {key} must be a 32-bit positive whole number, got {v!r}")
            changes[key] = v
    for key, field_name in NETWORK_FIELDS.items():
        v = config.get(key)
        if v is not None:
            high = 1 << 32 if key == "net_magic" else 65535
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < high:
                raise ValueError(f"chain parameters: {key} must be a whole number in 1..{high - 1}, got {v!r}")
            changes[field_name] = v
    if "genesis_bits" in changes and not 0 < difficulty.compact_to_big(changes["genesis_bits"]) <= \
            difficulty.compact_to_big(REGTEST_POW_LIMIT):
        raise ValueError(f"chain parameters: genesis_bits 0x{changes['genesis_bits']:08x} is not a target "
                         f"within the pow limit 0x{REGTEST_POW_LIMIT:08x}")
    lengths = {key: config[key] for key in RUN_LENGTHS if config.get(key) is not None}
    return regtest(name="pktlab-run", **changes).time_scaled(**lengths)


def run_config(p: ChainParams) -> dict:
    """The config form of a run's parameters (the inverse of for_run)."""
    out = {key: getattr(p, field) for key, field in RUN_LENGTHS.items()}
    out.update(genesis_time=p.genesis_time, genesis_bits=p.starting_bits)
    out.update({key: getattr(p, f) for key, f in NETWORK_FIELDS.items() if getattr(p, f) != getattr(MAINNET, f)})
    return out


def regtest(*, fast_anns: bool = False, **changes) -> ChainParams:
    """Test parameters: the easiest pow limit (0x207fffff), no min-difficulty rule, and any field given (e.g.
    regtest(target_block_time=1, coinbase_maturity=5)). Announcement validation stays faithful unless
    `fast_anns` accepts fast-mode announcements too (the only place they are accepted)."""
    base = replace(MAINNET, name="pktlab-regtest", pow_limit_bits=REGTEST_POW_LIMIT, min_diff_reduction_until=0,
                   pc_rules=pc_block.TESTBED_FAST if fast_anns else pc_block.TESTBED)
    return replace(base, **changes)
