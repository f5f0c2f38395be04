"""Market service processes (python -m node.market.service) on the loopback for the market tests, next to a real
chain node process (market_chain_node.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from node.cjdns.keys import Identity
from tests.unit.market_chain_node import free_port


class MarketProcess:
    def __init__(self, directory: Path, name: str, chain, wallet, offers=(), swap=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.identity = Identity.from_seed(f"market test {name}".encode(), 0)
        self.wallet = wallet
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {"node": name, "address": "127.0.0.1", "state_dir": str(self.dir),
                       "log_file": str(self.dir / "market.log"), "chain": chain.config,
                       "settings": {"port": self.port, "chain_url": chain.url, "tick_s": 0.2,
                                    "node_secret": self.identity.private_key.hex(),
                                    "wallet_secret": wallet.secret.hex(), "offers": list(offers),
                                    **({"swap": swap} if swap else {})}}
        (self.dir / "market.json").write_text(json.dumps(self.config))
        self.proc = None
        self.start()

    def start(self) -> None:
        with open(self.dir / "market.stderr", "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "node.market.service", str(self.dir / "market.json")],
                                         stdout=subprocess.DEVNULL, stderr=err)
        end = time.monotonic() + 30
        while True:
            try:
                self.get("/status")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"market {self.name} did not start: "
                                       f"{(self.dir / 'market.stderr').read_text()[-2000:]}")
                time.sleep(0.1)

    @property
    def key(self) -> str:
        from node.cjdns import keys
        return keys.signing_public_key(self.identity.private_key).hex()

    def request(self, method: str, path: str, data: bytes | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(self, path: str) -> dict:
        status, answer = self.request("GET", path)
        assert status == 200, answer
        return answer

    def post(self, path: str, body) -> dict:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, answer = self.request("POST", path, data)
        assert status == 200, answer
        return answer

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
