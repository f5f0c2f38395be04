"""The Vagrant backend's plan (what vagrant/Vagrantfile builds) and how the VMs become SSH hosts, without VMs."""
import pytest

from testbed.backends.base import BackendError
from testbed.backends.vm import LINK_MAC_PREFIX, UDP_BASE, plan, ssh_hosts
from testbed.topology import load


def test_one_vm_per_node_and_a_nic_pair_per_link():
    p = plan("run.abc123", load("ring:3"))
    assert list(p["machines"]) == ["vm1", "vm2", "vm3"]
    assert [m["nodes"] for m in p["machines"].values()] == [["n1"], ["n2"], ["n3"]]
    nics = {(vm, n["link"]): n for vm, m in p["machines"].items() for n in m["nics"]}
    assert len(nics) == 6                                   # 3 links, a NIC at each end
    a, b = nics[("vm1", "n1--n2")], nics[("vm2", "n1--n2")]
    assert (a["port"], a["peer_port"], b["port"], b["peer_port"]) == (UDP_BASE, UDP_BASE + 1, UDP_BASE + 1, UDP_BASE)
    assert (a["node"], a["ifname"], b["node"], b["ifname"]) == ("n1", "n1-eth0", "n2", "n2-eth0")
    macs = [n["mac"] for n in nics.values()]
    assert len(set(macs)) == 6 and all(m.startswith(LINK_MAC_PREFIX + ":") for m in macs)
    assert p["prefix"] == "pktlab-run-abc123-" and p["network"] == "pktlab-run-abc123"
    assert plan("run.abc123", load("ring:3")) == p                 # the same run, the same plan
    assert plan("run.other1", load("ring:3"))["machines"]["vm1"]["nics"][0]["mac"] != a["mac"]


def test_groups_of_nodes_share_a_vm_and_their_links_need_no_nic():
    p = plan("r.1", load("line:4"), nodes_per_vm=2, memory=384, driver="kvm")
    assert {vm: m["nodes"] for vm, m in p["machines"].items()} == {"vm1": ["n1", "n2"], "vm2": ["n3", "n4"]}
    assert [n["link"] for m in p["machines"].values() for n in m["nics"]] == ["n2--n3", "n2--n3"]
    assert (p["memory"], p["driver"], p["emulator"]) == (384, "kvm", None)
    with pytest.raises(BackendError, match="at least 1"):
        plan("r.1", load("line:2"), nodes_per_vm=0)


class _Run:
    state = {"vagrant": {"libvirt": {"netns": {"pid": 4242}}}}


def test_vms_become_ssh_hosts_from_vagrant_ssh_config():
    text = """Host vm1
  HostName 192.168.121.10
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  IdentityFile /run/pktlab/v/vagrant/.vagrant/machines/vm1/libvirt/private_key
  IdentitiesOnly yes

Host vm2
  HostName 192.168.121.11
  User vagrant
  Port 22
  IdentityFile "/run/pktlab/v/vagrant/.vagrant/machines/vm2/libvirt/private_key"
"""
    h1, h2 = ssh_hosts(_Run(), text)
    assert (h1.name, h1.address, h1.user, h1.port, h1.tunnel_address) == ("vm1", "192.168.121.10", "vagrant", 22,
                                                                         "192.168.121.10")
    assert h2.key == "/run/pktlab/v/vagrant/.vagrant/machines/vm2/libvirt/private_key"
    assert h1.proxy_command == "nsenter --net=/proc/4242/ns/net socat STDIO TCP:%h:%p"
