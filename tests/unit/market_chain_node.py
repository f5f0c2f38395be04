"""A real chain node process (python -m node.chain.service, role chain) on the loopback for the market tests, with a
test miner: blocks are built on a local replica of the node's chain (tests/unit/chain_helpers.py), take what the
node's mempool holds (its /template), and go in through /submitblock, as a pool's would."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from node.chain import params as P
from node.chain.chainstate import Chain
from node.chain.tx import Transaction
from tests.unit import chain_helpers as H

MATURITY = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChainNodeProcess:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = {"genesis_time": int(time.time()) - 7200, "genesis_bits": 0x207FFFFF, "maturity": MATURITY}
        self.params = P.for_run(self.config)
        self.socket = str(self.dir / "chain.sock")
        self.url = f"unix:{self.socket}"
        cfg = {"role": "chain", "node": "c1", "address": "127.0.0.1", "state_dir": str(self.dir),
               "events_file": None, "log_file": str(self.dir / "chain.log"), "chain": self.config,
               "settings": {"p2p_port": free_port(), "rpc_port": free_port(), "socket": self.socket, "peers": []}}
        (self.dir / "chain.json").write_text(json.dumps(cfg))
        with open(self.dir / "chain.stderr", "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "node.chain.service", str(self.dir / "chain.json")],
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.replicas = [Chain(self.dir / "replica0", self.params)]
        end = time.monotonic() + 30
        while not (self.dir / "chain.status.json").exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"chain node did not start: {(self.dir / 'chain.stderr').read_text()[-2000:]}")
            time.sleep(0.05)

    def rpc(self, path: str, body: dict | None = None) -> dict:
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(conn):
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.connect(self.socket)
        c = Conn("localhost", timeout=30)
        c.request("GET" if body is None else "POST", path, body=None if body is None else json.dumps(body))
        r = c.getresponse()
        out = json.loads(r.read())
        c.close()
        return out

    @property
    def chain(self) -> Chain:
        return self.replicas[0]

    def mine(self, n: int = 1, *, payout: bytes | None = None, take_mempool: bool = True, chain=None) -> list:
        """Mine n blocks on `chain` (the main replica by default) with the node's mempool; submit each."""
        chain = chain or self.chain
        out = []
        for _ in range(n):
            if take_mempool:
                t = self.rpc("/template", {"payouts": [[H.MINER.address, 1]]})
                for raw in t["transactions"]:
                    tx = Transaction.parse(bytes.fromhex(raw))
                    if tx.txid not in chain.mempool:
                        chain.accept_tx(tx, H.block_time(chain, chain.height + 1))
            block = H.next_block(chain, payout=payout)
            assert chain.process_block(block, block.header.time).ok
            answer = self.rpc("/submitblock", {"block": block.raw.hex()})
            assert answer.get("status") == "accepted", answer
            out.append(block)
        return out

    def branch(self, name: str, blocks: list) -> Chain:
        """A second replica holding `blocks` (to build a competing branch on)."""
        c = Chain(self.dir / name, self.params)
        for b in blocks:
            assert c.process_block(b, b.header.time).ok
        self.replicas.append(c)
        return c

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for c in self.replicas:
            c.close()
