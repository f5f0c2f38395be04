"""Agent config validation: good configs load, every bad field is named in the error."""

import copy
import json

import pytest

from node.agent.config import DEFAULT_TUN_MTU, ConfigError, load_config, parse_config
from node.cjdns import keys

ME = keys.Identity.from_seed(b"cfg", 0)
PEER = keys.Identity.from_seed(b"cfg", 1)


@pytest.fixture
def good(tmp_path):
    return {
        "node": "n0", "private_key": ME.private_key.hex(), "control_socket": str(tmp_path / "n0.sock"),
        "log_file": str(tmp_path / "n0.log"), "tun": {"ifname": "tun0", "mtu": 9000}, "udp_port": 7000,
        "peers": [{"switch_index": 0, "ifname": "l0", "local_addr": "fd00:0:0:1::1", "peer_addr": "fd00:0:0:1::2",
                   "peer_public_key": PEER.pubkey_text, "peer_name": "n1"}],
        "paths": {PEER.ip6_text: {"public_key": PEER.pubkey_text, "label": "0000.0000.0000.0013"}},
        "link_emulation": {"l0": {"delay_s": 0.01}},
    }


def test_good_config_loads(good, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(good))
    cfg = load_config(path)
    assert cfg.identity == ME and cfg.tun_mtu == 9000 and cfg.udp_port == 7000
    assert cfg.peers[0].peer_public_key == PEER.public_key and cfg.peers[0].switch_index == 0
    assert cfg.link_emulation["l0"].delay_s == 0.01


def test_defaults(good):
    del good["paths"], good["link_emulation"], good["tun"]["mtu"]
    cfg = parse_config(good)
    assert cfg.tun_mtu == DEFAULT_TUN_MTU and cfg.paths == {} and cfg.link_emulation == {}
    assert cfg.control_socket_owner is None
    assert parse_config(dict(good, control_socket_owner=1001)).control_socket_owner == 1001
    assert cfg.peers[0].link_crypto is True           # peer links are encrypted unless the config says not
    good["peers"][0]["link_crypto"] = False
    assert parse_config(good).peers[0].link_crypto is False


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c.pop("node"), "node"),
    (lambda c: c.update(extra=1), "extra"),
    (lambda c: c.update(private_key="zz"), "private_key"),
    (lambda c: c.update(udp_port=70000), "udp_port"),
    (lambda c: c.update(udp_port=True), "udp_port"),
    (lambda c: c["tun"].update(mtu=100), "tun.mtu"),
    (lambda c: c["tun"].update(ifname="x" * 16), "tun.ifname"),
    (lambda c: c.update(control_socket="/nonexistent/dir/s.sock"), "control_socket"),
    (lambda c: c.update(log_file="/nonexistent/dir/n0.log"), "log_file"),
    (lambda c: c["peers"][0].update(switch_index=1), "peers[0].switch_index"),
    (lambda c: c["peers"][0].update(switch_index=8192), "peers[0].switch_index"),     # beyond any hub scheme
    (lambda c: c["peers"][0].update(local_addr="10.0.0.1"), "peers[0].local_addr"),
    (lambda c: c["peers"][0].update(peer_public_key="abc.k"), "peers[0].peer_public_key"),
    (lambda c: c["peers"][0].update(link_crypto="no"), "peers[0].link_crypto"),
    (lambda c: c["peers"][0].pop("ifname"), "peers[0]"),
    (lambda c: c["peers"].append(dict(c["peers"][0], ifname="l1")), "peers[1].switch_index"),
    (lambda c: c["peers"].append(dict(c["peers"][0], switch_index=2)), "peers[1].ifname"),
    (lambda c: c.update(paths={"fc00::1": {"public_key": PEER.pubkey_text, "label": "0000.0000.0000.0013"}}),
     "paths"),
    (lambda c: c.update(link_emulation={"l9": {}}), "link_emulation.l9"),
    (lambda c: c.update(link_emulation={"l0": {"loss": 2}}), "link_emulation.l0.loss"),
    (lambda c: c.update(control_socket_owner="alice"), "control_socket_owner"),
    (lambda c: c.update(control_socket_owner=-1), "control_socket_owner"),
])
def test_bad_fields_are_named(good, mutate, field):
    bad = copy.deepcopy(good)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        parse_config(bad, "cfg.json")
    assert "cfg.json" in str(err.value) and field in str(err.value)


def test_private_key_outside_fc_is_rejected(good):
    bad = next(i for i in (keys.Identity.from_private_key(bytes([n]) * 32) for n in range(256)) if not i.valid)
    good["private_key"] = bad.private_key.hex()
    with pytest.raises(ConfigError, match="fc00::/8"):
        parse_config(good)


def test_unreadable_and_invalid_json(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    p = tmp_path / "bad.json"
    p.write_text("{nope")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(p)
