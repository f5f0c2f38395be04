"""The SSH-hosts backend: one mesh spread over several machines, `pktlab up TOPOLOGY --hosts inventory.yaml`.

How a run is built (the journal records the hosts first, so a crash at any point can be cleaned on every host):
1. Placement (remote_inventory.place): each node on one host. The journal gets `hosts` (how to reach each host, its
   run directory and project copy) and `placement`.
2. Preflight, every host at once (remote_ssh): connect, host key, user key, root or passwordless sudo, Python >= 3.11.
   Any failure stops the run before anything exists anywhere, with one line per failing host.
3. playbooks/up.yml through ansible-runner: missing Debian packages installed, the project copied (once per version),
   then the host helper (remote_host.py) builds the host's namespaces and links. Links inside a host are veth pairs
   as on one machine; a link between two hosts is a VXLAN device at each end, between the hosts' addresses, with a
   VNI derived from the run id and the link number (kernel VXLAN, UDP port 4789), inside the node's namespace.
   Addresses and interface names are those of the namespace backend (backends/netns.py), so the agents' configs
   are the same.
4. The control forwarder (remote_control.py) starts on the orchestrator: RUN/nodes/NODE/agent.sock, as everywhere.
5. playbooks/agents.yml starts the agents (Mesh writes their configs as usual; the helper points their sockets and
   logs at the host's run directory and hands the sockets to the SSH user).

Afterwards commands in a node are `ssh HOST sudo nsenter --net=/proc/HOLDER/ns/net CMD` (shared connections), the
other per-node work is one host-helper call per host, and cleanup is playbooks/down.yml on every host of the journal,
then the local part (forwarder, monitor, SSH masters) as for any run. A host that cannot be cleaned is named and the
run kept, so `pktlab cleanup` can finish the job when it is back (or `--skip-unreachable` gives it up).

At most `parallel_execs` commands run at once per mesh operation: sshd allows 10 sessions per connection by default.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from testbed import runs
from testbed.backends import remote_inventory as inv
from testbed.backends.base import Backend, BackendError
from testbed.backends.netns import DEFAULT_MTU, interfaces_by_node, link_macs, plan_links, run_prefix
from testbed.backends.remote_ansible import project_tarball, run_playbook
from testbed.backends.remote_inventory import Host, InventoryError
from testbed.backends.remote_ssh import as_root, check_hosts, pin_host_keys, ssh_argv, stop_masters, write_config

VXLAN_PORT = 4789
HELPER_TIMEOUT = 60.0
FORWARDER_WAIT = 15.0
log = logging.getLogger("pktlab")


class SshBackend(Backend):
    name = "ssh"
    parallel_execs = 8

    @classmethod
    def for_new_run(cls, run, topo, hosts=None, **unknown) -> "SshBackend":
        if unknown:
            raise BackendError(f"the ssh backend takes hosts=INVENTORY, not {', '.join(sorted(unknown))}")
        if hosts is None:
            raise BackendError("the ssh backend needs an inventory of hosts (--hosts inventory.yaml)")
        try:
            inventory = inv.load(hosts)
            placement = inv.place(topo, inventory)
        except InventoryError as e:
            raise BackendError(str(e)) from None
        used = [h for h in inventory.hosts.values() if h.name in placement.values()]
        return cls._record(run, topo, used, placement, inventory.known_hosts)

    @classmethod
    def _record(cls, run, topo, used: list[Host], placement: dict[str, str], known_hosts: str = "") -> "SshBackend":
        """Write hosts and placement to the journal before any host is contacted."""
        tarball, digest = project_tarball(run.path("ansible"))
        run.state["backend"] = cls.name
        run.state["hosts"] = {h.name: dict(h.to_dict(), dir=f"{h.root}/runs/{run.id}", code=f"{h.root}/code/{digest}",
                                           tag=f"{run.id}@{h.name}") for h in used}
        run.state["placement"] = placement
        run.state["known_hosts_source"] = known_hosts
        run.state["tarball"] = str(tarball)
        run.save()
        return cls(run, topo)

    def hosts(self) -> dict[str, Host]:
        return {name: Host.from_dict(h) for name, h in self.run.state.get("hosts", {}).items()}

    def host_of(self, node: str) -> str:
        host = self.run.state.get("placement", {}).get(node)
        if host is None:
            raise BackendError(f"run {self.run.name} has no node {node!r}")
        return host

    def hostvars(self, extra: dict[str, dict] | None = None) -> dict[str, dict]:
        """Per host, the variables the playbooks read (its run directory, project copy, tag; `extra` per host)."""
        return {name: {"pktlab_dir": h["dir"], "pktlab_code": h["code"], "pktlab_tag": h["tag"],
                       "pktlab_tarball": self.run.state.get("tarball", ""), "pktlab_local_dir": str(self.run.dir),
                       **(extra or {}).get(name, {})}
                for name, h in self.run.state["hosts"].items()}

    def _playbook(self, playbook: str, hosts: list[str], specs: dict[str, dict] | None = None,
                  task: str | None = None) -> dict[str, dict]:
        """Run a playbook on these hosts, each with its JSON spec; the JSON each printed (task `task`), or
        BackendError naming every host that failed."""
        extra = {}
        for h, spec in (specs or {}).items():
            path = self.run.path("ansible", "specs", f"{Path(playbook).stem}-{h}.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(spec))
            extra[h] = {"pktlab_spec": str(path)}
        all_hosts = self.hosts()
        results = run_playbook(self.run, playbook, [all_hosts[h] for h in hosts], self.hostvars(extra),
                               tasks=(task,) if task else ())
        failed = [f"host {all_hosts[h].where()}: {r.error}" for h, r in results.items() if not r.ok]
        if failed:
            raise BackendError("; ".join(failed))
        return {h: json.loads(r.outputs[task].splitlines()[-1]) for h, r in results.items() if task}

    # -- building ----------------------------------------------------------------------------------------------
    def build(self, progress) -> None:
        hosts = self.hosts()
        write_config(self.run, hosts)
        known = self.run.path("ssh", "known_hosts")
        source = self.run.state.get("known_hosts_source")
        progress("hosts", 0, len(hosts))
        problems = pin_host_keys(source, list(hosts.values()), known) if source else []
        problems = problems or check_hosts(list(hosts.values()), known, accept_new=not source)
        if problems:
            raise BackendError("; ".join(problems))
        for h in self.run.state["hosts"].values():
            h["reached"] = True    # from here on a host may hold something of the run: cleanup goes there
        self.run.save()
        progress("hosts", len(hosts), len(hosts))
        self.run.state["prefix"] = str(run_prefix(self.run.id))
        links = plan_links(self.run.id, self.topo)
        specs = self._build_specs(links)
        built = self._playbook("up.yml", list(hosts), specs, task="build namespaces and links")
        for host, nodes in built.items():
            for n, rec in nodes.items():
                self.run.state["nodes"][n] = dict(rec, host=host)
        self.run.state["links"] = [dict(vars(rec), kind=kind) for rec, kind in zip(links, self._kinds(links))]
        self.run.save()
        progress("namespaces", len(self.topo.nodes), len(self.topo.nodes))
        self._start_forwarder()

    def _kinds(self, links) -> list[str]:
        place = self.run.state["placement"]
        return ["veth" if place[r.a] == place[r.b] else "vxlan" for r in links]

    def end_macs(self, i: int) -> tuple[str, str]:
        """The (a side, b side) MAC addresses of link number i: the namespace backend's everywhere here."""
        return link_macs(i)

    def _cross_host_ends(self, i: int, rec, host_a: str, host_b: str) -> dict[str, tuple[str, dict]]:
        """host -> (spec section, entry) for both ends of a link between two hosts: a VXLAN tunnel each."""
        vni = 1 + (int.from_bytes(hashlib.sha256(self.run.id.encode()).digest()[:3], "big") + i) % 0xFFFFFE
        hosts = self.hosts()
        a, b = hosts[host_a].tunnel_address, hosts[host_b].tunnel_address
        a_mac, b_mac = self.end_macs(i)
        return {host_a: ("tunnels", {"name": rec.name, "node": rec.a, "ifname": rec.a_if, "mac": a_mac, "vni": vni,
                                     "local": a, "remote": b, "port": VXLAN_PORT}),
                host_b: ("tunnels", {"name": rec.name, "node": rec.b, "ifname": rec.b_if, "mac": b_mac, "vni": vni,
                                     "local": b, "remote": a, "port": VXLAN_PORT})}

    def _build_specs(self, links) -> dict[str, dict]:
        place = self.run.state["placement"]
        specs = {h: {"nodes": [], "veths": [], "tunnels": [], "nics": [], "ifaces": {}, "mtu": DEFAULT_MTU}
                 for h in self.run.state["hosts"]}
        for n in self.topo.nodes:
            specs[place[n]]["nodes"].append(n)
        for i, rec in enumerate(links):
            ha, hb = place[rec.a], place[rec.b]
            if ha == hb:
                a_mac, b_mac = self.end_macs(i)
                specs[ha]["veths"].append({"name": rec.name, "a": rec.a, "a_if": rec.a_if, "a_mac": a_mac,
                                           "b": rec.b, "b_if": rec.b_if, "b_mac": b_mac})
                continue
            for host, (section, entry) in self._cross_host_ends(i, rec, ha, hb).items():
                specs[host][section].append(entry)
        for node, ifaces in interfaces_by_node(self.topo, links, self.end_macs).items():
            specs[place[node]]["ifaces"][node] = ifaces
        return specs

    def _start_forwarder(self) -> None:
        log_file = open(self.run.path("forwarder.log"), "ab")
        proc = subprocess.Popen([sys.executable, "-m", "testbed.backends.remote_control", str(self.run.dir)],
                                env=self._env(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                start_new_session=True)
        log_file.close()
        self.run.state["forwarder"] = {"pid": proc.pid, "start": runs.proc_start_time(proc.pid)}
        self.run.save()
        sockets = [self.run.path("nodes", n, "agent.sock") for n in self.run.state["placement"]]
        deadline = time.monotonic() + FORWARDER_WAIT
        while not all(s.exists() for s in sockets):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = self.run.path("forwarder.log").read_text(errors="replace")[-1500:]
                raise BackendError(f"the control forwarder did not start: {tail.strip() or 'no output'}")
            time.sleep(0.02)

    def _env(self) -> dict:
        return dict(os.environ, **{runs.TAG_VAR: self.run.id})

    # -- the host helper -----------------------------------------------------------------------------------------
    def _helper(self, host: str, args: list[str], stdin=None, timeout: float = HELPER_TIMEOUT):
        h = self.run.state["hosts"][host]
        spec = Host.from_dict(h)
        remote = as_root(spec, ["env", f"PYTHONPATH={h['code']}", spec.python, "-m", "testbed.backends.remote_host",
                                "--dir", h["dir"], "--id", h["tag"]] + args)
        try:
            r = subprocess.run(ssh_argv(self.run, host, remote), input=json.dumps(stdin) if stdin is not None else "",
                               capture_output=True, text=True, timeout=timeout, env=self._env())
        except subprocess.TimeoutExpired:
            raise BackendError(f"host {spec.where()}: {args[0]} did not finish in {timeout:g} s") from None
        if r.returncode != 0:
            lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
            why = lines[-1] if lines else f"ssh exit status {r.returncode}"
            raise BackendError(f"host {spec.where()}: {why}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def _per_host(self, fn, hosts) -> dict:
        """fn(host) on every host at once; host -> result (or the exception it raised)."""
        out = {}

        def one(h):
            try:
                out[h] = fn(h)
            except BackendError as e:
                out[h] = e
        threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    # -- agents ------------------------------------------------------------------------------------------------
    def start_agents(self, groups, progress=lambda step, done, total: None) -> None:
        per_host: dict[str, dict] = {}
        for group in groups:
            by_host: dict[str, list[str]] = {}
            for n in group:     # a group of nodes shares a process: only on one host
                by_host.setdefault(self.host_of(n), []).append(n)
            for host, nodes in by_host.items():
                spec = per_host.setdefault(host, {"groups": [], "configs": {}})
                spec["groups"].append(nodes)
                for n in nodes:
                    spec["configs"][n] = json.loads(self.run.path("nodes", n, "agent.json").read_text())
        started = self._playbook("agents.yml", list(per_host), per_host, task="start agents")
        for host, recs in started.items():
            for n, rec in recs.items():
                self.run.state["agents"][n] = dict(rec, host=host)
        total = sum(map(len, groups))
        progress("agents", total, total)

    def stop_agent(self, node, sig=15, timeout=10.0) -> None:
        self._helper(self.host_of(node), ["stop-agent", node, str(int(sig)), str(timeout)], timeout=timeout + 30)

    def signal_agent(self, node, sig) -> None:
        self._helper(self.host_of(node), ["signal", node, str(int(sig))])

    def agent_state(self, node) -> str | None:
        return self._helper(self.host_of(node), ["agent-state", node])

    # -- inside nodes ------------------------------------------------------------------------------------------
    def popen(self, node, argv, tty=False, **popen_kwargs) -> subprocess.Popen:
        host = self.host_of(node)
        rec = self.run.state["nodes"].get(node)
        if rec is None:
            raise BackendError(f"node {node} of run {self.run.name} was not built")
        h = self.run.state["hosts"][host]
        remote = as_root(Host.from_dict(h), ["nsenter", f"--net=/proc/{rec['pid']}/ns/net", "--", "env",
                                             f"{runs.TAG_VAR}={h['tag']}", f"PKTLAB_NODE={node}"] + list(argv))
        popen_kwargs.pop("env", None)    # the local ssh's environment is the run's; the command's is the host's
        return subprocess.Popen(ssh_argv(self.run, host, remote, tty), env=self._env(), **popen_kwargs)

    def set_link_state(self, ends, up) -> None:
        by_host: dict[str, list[dict]] = {}
        for e in ends:
            by_host.setdefault(self.host_of(e.node), []).append({"node": e.node, "ifname": e.ifname,
                                                                  "addr": e.addr})
        results = self._per_host(lambda h: self._helper(h, ["link-state", "up" if up else "down"], by_host[h]),
                                 by_host)
        errors = [str(r) for r in results.values() if isinstance(r, BackendError)]
        if errors:
            raise BackendError("; ".join(errors))

    def send_udp(self, node, src, dst, sport, dport, payloads) -> None:
        self._helper(self.host_of(node), ["send-udp"], {"node": node, "src": src, "dst": dst, "sport": sport,
                                                        "dport": dport, "payloads": [p.hex() for p in payloads]})

    # -- status and records ----------------------------------------------------------------------------------------
    def node_states(self) -> dict[str, dict]:
        results = self._per_host(lambda h: self._helper(h, ["status"], timeout=20), self.run.state.get("hosts", {}))
        states = {}
        for node, host in self.run.state.get("placement", {}).items():
            r = results.get(host)
            if isinstance(r, BackendError):
                states[node] = {"alive": None, "agent": None, "host": host, "error": str(r)}
            else:
                states[node] = dict((r or {}).get(node, {"alive": False, "agent": None}), host=host)
        return states

    def collect_logs(self) -> None:
        self._playbook("collect.yml", list(self.run.state["hosts"]))


def clean_hosts(run, skip_unreachable: bool = False) -> None:
    """Remove the run's part on every host of its journal (playbooks/down.yml); RunError naming the hosts that
    could not be cleaned, unless skip_unreachable (then they are only warned about)."""
    backend = SshBackend(run)
    hosts = backend.hosts()
    write_config(run, hosts)
    # hosts are touched only once every one of them passed the checks; before that there is nothing to clean
    todo = [name for name, h in run.state["hosts"].items() if h.get("reached")]
    results = run_playbook(run, "down.yml", [hosts[h] for h in todo], backend.hostvars()) if todo else {}
    stop_masters(run, hosts)
    failed = [f"host {hosts[h].where()}: {r.error}" for h, r in results.items() if not r.ok]
    if failed and not skip_unreachable:
        raise runs.RunError(f"run {run.name}: could not clean {'; '.join(failed)}. The run is kept: `pktlab cleanup "
                            f"{run.name}` again once the host answers, or add --skip-unreachable to give up on it")
    for msg in failed:
        log.warning("pktlab: left behind on an unreachable host: %s", msg)
