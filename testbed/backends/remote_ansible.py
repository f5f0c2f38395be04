"""Running the playbooks (playbooks/) on a run's hosts with ansible-runner, and the project copy they install.

Ansible connects with the run's OpenSSH config (remote_ssh.write_config), so it shares the host keys and the
connections of everything else; its processes carry the run's tag. A play's outcome comes back per host: the output
of its named tasks (the host helper's JSON), or why the host failed (unreachable, or the failing task and its
message), so callers can name the host and go on with the others.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from testbed import runs
from testbed.backends.remote_inventory import Host

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
# python3-scipy: a route server's path search (node/route_server/csr.py)
PACKAGES = ["python3", "python3-nacl", "python3-pyroute2", "python3-networkx", "python3-scipy", "iproute2",
            "iputils-ping", "iperf3", "tcpdump", "procps", "util-linux"]


@dataclass
class HostResult:
    ok: bool = True
    error: str = ""
    outputs: dict[str, str] = field(default_factory=dict)   # task name -> stdout


def project_tarball(dest: Path) -> tuple[Path, str]:
    """node/ and testbed/ (sources and the built accelerator, no caches or data) as a tar.gz named by its content,
    so a host unpacks each version once."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for top in ("node", "testbed"):
            for path in sorted((ROOT / top).rglob("*")):
                if path.is_file() and path.suffix in (".py", ".so") and "__pycache__" not in path.parts:
                    info = tar.gettarinfo(str(path), arcname=str(path.relative_to(ROOT)))
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()[:16]
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"pktlab-{digest}.tar.gz"
    if not out.exists():
        import gzip
        out.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return out, digest


def run_playbook(run, playbook: str, hosts: list[Host], hostvars: dict[str, dict], tasks: tuple[str, ...] = ()
                 ) -> dict[str, HostResult]:
    """Run playbooks/PLAYBOOK on these hosts; per host, its result with the stdout of the named tasks."""
    import ansible_runner
    private = run.path("ansible")
    private.mkdir(exist_ok=True)
    inventory = {"all": {"hosts": {h.name: dict(hostvars.get(h.name, {}), ansible_host=h.name,
                                                ansible_python_interpreter=h.python,
                                                ansible_become=h.user != "root")
                                   for h in hosts}}}
    ssh_config = run.path("ssh", "config")
    env = {
        "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
        "ANSIBLE_SSH_ARGS": f"-F {ssh_config}",     # everything about the connection is in the run's config
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        "ANSIBLE_FORKS": str(max(5, min(50, len(hosts)))),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        runs.TAG_VAR: run.id,                         # its ssh connections are the run's: cleanup stops them
    }
    results = {h.name: HostResult() for h in hosts}

    def on_event(event):
        data = event.get("event_data", {})
        host, res = data.get("host"), data.get("res") or {}
        if host not in results:
            return True
        if event.get("event") == "runner_on_unreachable":
            results[host] = HostResult(False, f"unreachable: {_message(res)}")
        elif event.get("event") == "runner_on_failed" and not data.get("ignore_errors"):
            results[host].ok = False
            results[host].error = f"task '{data.get('task')}' failed: {_message(res)}"
        elif event.get("event") == "runner_on_ok" and data.get("task") in tasks:
            results[host].outputs[data["task"]] = res.get("stdout", "")
        return True

    r = ansible_runner.run(private_data_dir=str(private), playbook=str(PLAYBOOKS / playbook), inventory=inventory,
                           envvars=env, extravars={"pktlab_packages": PACKAGES}, quiet=True,
                           event_handler=on_event, settings={"suppress_ansible_output": True},
                           suppress_env_files=True)
    if r.rc != 0 and all(res.ok for res in results.values()):   # Ansible itself failed, before any host
        out = private / "artifacts" / str(r.config.ident) / "stdout"
        lines = [line for line in (out.read_text(errors="replace") if out.exists() else "").splitlines() if line]
        why = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "no output")
        for res in results.values():
            res.ok, res.error = False, f"ansible-playbook {playbook} failed ({r.status}, rc {r.rc}): {why}"
    for res in results.values():
        missing = [t for t in tasks if t not in res.outputs]
        if res.ok and missing:
            res.ok, res.error = False, f"task '{missing[0]}' did not run"
    return results


def _message(res: dict) -> str:
    """The most telling line of a failed task's result: its stderr, else msg."""
    for key in ("stderr", "msg", "module_stderr", "stdout"):
        text = res.get(key)
        if isinstance(text, str) and text.strip():
            lines = [line for line in text.strip().splitlines() if line.strip()]
            return lines[-1] if key != "msg" else " ".join(lines)
    return json.dumps({k: v for k, v in res.items() if not k.startswith("_")})[:300]
