"""The agent config's "leases" section (tun_switch/lease_config.py)."""
import pytest

from node.cjdns import keys
from node.leases.config import parse_lease_config
from node.leases.table import LeaseError

ALICE = keys.Identity.from_seed(b"lease-config", 0)
BOB = keys.Identity.from_seed(b"lease-config", 1)
FREE_IFS = {"eth1": 0, "eth2": 2}


def good():
    return {"links": {"eth1": {"capacity_bps": 8_000_000, "leases": [
        {"id": "L1", "interface": 5, "udp_port": 6001, "guarantee_bps": 2_000_000, "max_priority_bandwidth": 1000,
         "clear_customer_bit": True, "deprioritize_non_customer": 3, "holder": ALICE.pubkey_text,
         "expires_at": 1000.0, "virtual_router": "vr1"}]}},
        "virtual_routers": [{"id": "vr1", "holder": ALICE.pubkey_text}]}


def test_good_config_builds_the_table():
    cfg = parse_lease_config(good(), FREE_IFS, wall_to_clock=lambda t: t - 900)
    t = cfg.table
    lease = t.find("L1")
    assert (lease.link, lease.guarantee_bps, lease.max_priority_bandwidth, lease.clear_customer_bit,
            lease.deprioritize_non_customer, lease.holder, lease.expires, lease.virtual_router) == \
        ("eth1", 2_000_000, 1000.0, True, 3, ALICE.public_key, 100.0, "vr1")
    assert t.resolve(5, 0).id == "L1" and t.resolve(5, 100).is_free
    assert t.resolve(0, 0).is_free and t.resolve(2, 0).link == "eth2"
    assert t.links["eth1"].capacity_bps == 8_000_000 and t.links["eth2"].capacity_bps is None
    assert cfg.ports == {("eth1", "L1"): 6001} and cfg.interfaces == {("eth1", "L1"): 5}


def test_lease_ports_must_not_collide_with_reserved_ones():
    with pytest.raises(LeaseError, match="udp_port"):
        parse_lease_config(good(), FREE_IFS, reserved_ports={6001})


def test_empty_section_gives_free_leases_only():
    t = parse_lease_config({}, FREE_IFS).table
    assert sorted(t.links) == ["eth1", "eth2"] and all(list(ll.leases) == ["free"] for ll in t.links.values())


def mutate(fn):
    d = good()
    fn(d)
    return d


def lease0(d):
    return d["links"]["eth1"]["leases"][0]


@pytest.mark.parametrize("bad,field", [
    (mutate(lambda d: d.update(extra=1)), "leases"),
    (mutate(lambda d: d["links"].update(eth9={})), "eth9"),
    (mutate(lambda d: d["links"]["eth1"].update(capacity_bps=0)), "capacity_bps"),
    (mutate(lambda d: lease0(d).update(interface=1)), "leases[0]"),
    (mutate(lambda d: lease0(d).update(interface=2)), "leases[0]"),          # the free lease of eth2
    (mutate(lambda d: lease0(d).update(udp_port=70000)), "udp_port"),
    (mutate(lambda d: lease0(d).update(holder="nope.k")), "holder"),
    (mutate(lambda d: lease0(d).update(expires_at="soon")), "expires_at"),
    (mutate(lambda d: lease0(d).update(colour="red")), "colour"),
    (mutate(lambda d: lease0(d).pop("udp_port")), "udp_port"),
    (mutate(lambda d: lease0(d).update(deprioritize_non_customer=99)), "deprioritize_non_customer"),
    (mutate(lambda d: lease0(d).update(clear_customer_bit="yes")), "clear_customer_bit"),
    (mutate(lambda d: lease0(d).update(holder=BOB.pubkey_text)), "another holder"),
    (mutate(lambda d: lease0(d).update(id="free")), "built in"),
    (mutate(lambda d: d["virtual_routers"].append({"id": "vr1", "holder": BOB.pubkey_text})), "already exists"),
])
def test_bad_configs_name_the_field(bad, field):
    with pytest.raises(LeaseError) as e:
        parse_lease_config(bad, FREE_IFS)
    assert field in str(e.value)


def test_origin_traffic_class():
    cfg = parse_lease_config({"origin": {"priority": 12, "customer": True}}, FREE_IFS)
    assert cfg.origin_tc == (12 << 12) | (1 << 11)
    assert parse_lease_config({}, FREE_IFS).origin_tc is None
    for bad in ({"priority": 16}, {"priority": True}, {"priority": 3, "customer": 1}, {"x": 1}, [], {}):
        with pytest.raises(LeaseError, match="origin"):
            parse_lease_config({"origin": bad}, FREE_IFS)
