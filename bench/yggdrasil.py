"""yggdrasil (the Debian package), the baseline mesh router of the benchmarks: configs, readiness, shutdown."""
import json
import os
import shutil
import signal
import subprocess

from testbed.waiting import wait_until

YGG = shutil.which("yggdrasil") or "/usr/sbin/yggdrasil"
YGG_PORT = 7300


def write_config(workdir: str, name: str, peers: list[str], listen: list[str]) -> tuple[str, str]:
    """A fresh config with static peers only (no multicast, no admin socket); returns (path, yggdrasil address)."""
    conf = json.loads(subprocess.run([YGG, "-genconf", "-json"], capture_output=True, text=True,
                                     check=True).stdout)
    conf.update({"Peers": peers, "Listen": listen, "MulticastInterfaces": [], "AdminListen": "none",
                 "IfName": "ygg0", "IfMTU": 65535, "NodeInfoPrivacy": True})
    path = os.path.join(workdir, f"ygg-{name}.json")
    with open(path, "w") as f:
        json.dump(conf, f)
    address = subprocess.run([YGG, "-useconffile", path, "-address"], capture_output=True, text=True,
                             check=True).stdout.strip()
    return path, address


def wait_listening(log_path: str, listeners: int, timeout: float = 10.0) -> None:
    """Wait until the instance logging to log_path has started all its TCP listeners (or the timeout passes)."""
    def started():
        with open(log_path) as f:
            return f.read().count("TCP listener started") >= listeners
    wait_until(started, timeout, interval=0.05)


def stop_procs(procs) -> None:
    """SIGTERM each process group, then SIGKILL what does not stop within 10 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
