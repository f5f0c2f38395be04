"""The SSH backend's plans, without any host: inventory parsing and its errors, placement, which links become veth
pairs or VXLAN tunnels (and their ids and endpoints), the OpenSSH config, and the project copy."""
import hashlib
import tarfile

import pytest
import yaml

from testbed import runs
from testbed.backends import remote_inventory as inv
from testbed.backends.remote_ansible import project_tarball
from testbed.backends.remote_ssh import as_root, ssh_argv, write_config
from testbed.backends.ssh import VXLAN_PORT, SshBackend
from testbed.topology import load


@pytest.fixture
def key(tmp_path):
    k = tmp_path / "id"
    k.write_text("not really a key, only has to exist here")
    return str(k)


def inventory(tmp_path, key, **extra):
    data = {"hosts": {"h1": {"address": "192.0.2.1", "key": key},
                      "h2": {"address": "192.0.2.2", "key": key, "user": "admin", "port": 2222},
                      "h3": {"address": "192.0.2.3", "key": key, "tunnel_address": "198.51.100.3"}}, **extra}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_inventory_defaults_and_fields(tmp_path, key):
    i = inv.load(inventory(tmp_path, key))
    h1, h2, h3 = i.hosts.values()
    assert (h1.user, h1.port, h1.python, h1.root, h1.tunnel_address) == ("root", 22, "/usr/bin/python3",
                                                                        "/var/lib/pktlab", "192.0.2.1")
    assert h2.where() == "h2 (admin@192.0.2.2:2222)"
    assert h3.tunnel_address == "198.51.100.3"
    assert inv.Host.from_dict(dict(h2.to_dict(), dir="/x", tag="t")) == h2


@pytest.mark.parametrize("change, message", [
    ({"hosts": {}}, "hosts: expected a mapping"),
    ({"extra": 1}, "extra: unknown field"),
    ({"hosts": {"H1": {"address": "a", "key": "k"}}}, "hosts.H1: a host name is"),
    ({"hosts": {"h1": {"address": "192.0.2.1"}}}, "hosts.h1.key: required"),
    ({"hosts": {"h1": {"key": "KEY"}}}, "hosts.h1.address: required"),
    ({"hosts": {"h1": {"address": "192.0.2.1", "key": "/nonexistent"}}}, "hosts.h1.key: /nonexistent: no such"),
    ({"hosts": {"h1": {"address": "192.0.2.1", "key": "KEY", "port": 0}}}, "hosts.h1.port: expected an integer"),
    ({"hosts": {"h1": {"address": "192.0.2.1", "key": "KEY", "python": "python3"}}}, "hosts.h1.python: expected an "
                                                                                      "absolute path"),
    ({"hosts": {"h1": {"address": "192.0.2.1", "key": "KEY", "tunnel_address": "x"}}}, "tunnel_address: expected"),
    ({"hosts": {"h1": {"address": "no-such-host.invalid", "key": "KEY"}}}, "hosts.h1.address: 'no-such-host.invalid'"
                                                                           " does not resolve"),
    ({"hosts": {"h1": {"address": "192.0.2.1", "key": "KEY", "colour": 1}}}, "hosts.h1.colour: unknown field"),
    ({"placement": {"n1": "h9"}}, "placement.n1: no host 'h9'"),
    ({"known_hosts": "/nonexistent"}, "known_hosts: /nonexistent: no such file"),
])
def test_inventory_errors_name_the_field(tmp_path, key, change, message):
    data = {"hosts": {"h1": {"address": "192.0.2.1", "key": key}}}
    for k, v in change.items():
        data[k] = yaml.safe_load(yaml.safe_dump(v).replace("KEY", key))
    with pytest.raises(inv.InventoryError) as err:
        inv.load(data)
    assert message in str(err.value)
    path = tmp_path / "inv.yaml"
    path.write_text("hosts: [\n")
    with pytest.raises(inv.InventoryError, match="inv.yaml: not YAML"):
        inv.load(path)


def test_placement_attr_then_inventory_then_round_robin(tmp_path, key):
    topo = load("line:5")
    topo.nodes["n5"].attrs["host"] = "h3"
    placed = inv.place(topo, inv.load(inventory(tmp_path, key, placement={"n2": "h1"})))
    assert placed == {"n1": "h1", "n2": "h1", "n3": "h2", "n4": "h3", "n5": "h3"}
    topo.nodes["n1"].attrs["host"] = "h7"
    with pytest.raises(inv.InventoryError, match="node n1: host 'h7' is not in the inventory"):
        inv.place(topo, inv.load(inventory(tmp_path, key)))
    with pytest.raises(inv.InventoryError, match="placement: no node 'x9'"):
        inv.place(load("line:2"), inv.load(inventory(tmp_path, key, placement={"x9": "h1"})))


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("PKTLAB_HOME", str(tmp_path / "runs"))
    return runs.new_run("plan", "plan", "test")


def test_links_within_a_host_are_veth_and_between_hosts_vxlan(run, tmp_path, key):
    topo = load("ring:4")
    backend = SshBackend.for_new_run(run, topo, hosts=str(inventory(tmp_path, key, placement={"n2": "h1"})))
    assert run.state["placement"] == {"n1": "h1", "n2": "h1", "n3": "h2", "n4": "h3"}
    assert set(run.state["hosts"]) == {"h1", "h2", "h3"}
    h1 = run.state["hosts"]["h1"]
    assert h1["dir"] == f"/var/lib/pktlab/runs/{run.id}" and h1["tag"] == f"{run.id}@h1"
    assert h1["code"].startswith("/var/lib/pktlab/code/")
    from testbed.backends.netns import plan_links
    links = plan_links(run.id, topo)
    specs = backend._build_specs(links)
    assert [v["name"] for v in specs["h1"]["veths"]] == ["n1--n2"]
    tunnels = {(t["name"], h): t for h, s in specs.items() for t in s["tunnels"]}
    assert set(tunnels) == {("n2--n3", "h1"), ("n2--n3", "h2"), ("n3--n4", "h2"), ("n3--n4", "h3"),
                            ("n4--n1", "h3"), ("n4--n1", "h1")}
    a, b = tunnels[("n3--n4", "h2")], tunnels[("n3--n4", "h3")]
    assert (a["local"], a["remote"], b["local"], b["remote"]) == ("192.0.2.2", "198.51.100.3", "198.51.100.3",
                                                                  "192.0.2.2")
    assert a["vni"] == b["vni"] and a["port"] == VXLAN_PORT and (a["node"], a["ifname"]) == ("n3", "n3-eth1")
    vnis = {t["name"]: t["vni"] for t in tunnels.values()}
    assert len(set(vnis.values())) == 3 and all(1 <= v < 1 << 24 for v in vnis.values())
    base = int.from_bytes(hashlib.sha256(run.id.encode()).digest()[:3], "big")
    assert vnis["n2--n3"] == 1 + (base + 1) % 0xFFFFFE        # run id and link number: distinct between runs
    assert specs["h2"]["nodes"] == ["n3"] and [i[0] for i in specs["h2"]["ifaces"]["n3"]] == ["n3-eth0", "n3-eth1"]
    assert backend._kinds(links) == ["veth", "vxlan", "vxlan", "vxlan"]


def test_the_ssh_backend_needs_an_inventory(run):
    from testbed.backends.base import BackendError
    with pytest.raises(BackendError, match="needs an inventory"):
        SshBackend.for_new_run(run, load("line:2"))
    with pytest.raises(BackendError, match="hosts.h1.key"):
        SshBackend.for_new_run(run, load("line:2"), hosts={"hosts": {"h1": {"address": "192.0.2.1"}}})


def test_ssh_config_and_commands(run, tmp_path, key):
    i = inv.load(inventory(tmp_path, key))
    i.hosts["h2"].proxy_command = "ssh -W %h:%p jump"
    text = write_config(run, i.hosts).read_text()
    assert "Host h2\n  HostName 192.0.2.2\n  Port 2222\n  User admin\n" in text
    assert "ProxyCommand ssh -W %h:%p jump" in text and "HostKeyAlias h2" in text
    assert f"UserKnownHostsFile {run.path('ssh', 'known_hosts')}" in text and "StrictHostKeyChecking yes" in text
    assert f"ControlPath {run.path('ssh')}/cm-%n" in text
    argv = ssh_argv(run, "h2", as_root(i.hosts["h2"], ["nsenter", "--net=/proc/7/ns/net", "--", "echo", "a b"]))
    assert argv[:4] == ["ssh", "-F", str(run.path("ssh", "config")), "-T"]
    assert argv[-1] == "sudo -n -- nsenter --net=/proc/7/ns/net -- echo 'a b'"     # one word per argument
    assert as_root(i.hosts["h1"], ["true"]) == ["true"]


def test_project_copy_is_named_by_its_content(tmp_path):
    a, digest = project_tarball(tmp_path / "a")
    b, again = project_tarball(tmp_path / "b")
    assert digest == again and a.read_bytes() == b.read_bytes()       # the same tree, the same bytes
    with tarfile.open(a) as tar:
        names = tar.getnames()
    assert "testbed/backends/remote_host.py" in names and "node/agent/agent.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
