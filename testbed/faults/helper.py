"""Starting and stopping the helper processes behind flap and bursty loss (their loop is __main__.py, run as
`python -m testbed.faults flap|burst ...`)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys

from testbed import runs
from testbed.waiting import wait_until


def start_helper(mesh, args: list[str], fault_id: str) -> dict:
    """A detached process tagged with the run id, so `pktlab down` stops it even if nobody heals the fault."""
    env = dict(os.environ, **{runs.TAG_VAR: mesh.run.id, "PKTLAB_HOME": str(mesh.run.dir.parent)})
    seed = int(hashlib.sha256(f"{mesh.run.state.get('seed')}:{fault_id}".encode()).hexdigest()[:8], 16)
    log = open(mesh.run.path(f"fault-{fault_id}.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "testbed.faults", args[0], "--run", mesh.run.name,
                             "--seed", str(seed)] + args[1:], env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    log.close()
    return {"pid": proc.pid, "start": runs.proc_start_time(proc.pid)}


def stop_helper(rec: dict | None) -> None:
    if not rec or not runs.alive(rec["pid"], rec.get("start")):
        return
    os.kill(rec["pid"], signal.SIGTERM)
    if not wait_until(lambda: not runs.alive(rec["pid"], rec.get("start")), 5, interval=0.02):
        os.kill(rec["pid"], signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(rec["pid"], os.WNOHANG)
