"""Nodes with more peers than V358 numbers (node/cjdns/labels.py scheme_for_interfaces, a pktlab extension):
the hub scheme V3_5_B, its cjdns-generic director numbering, and a switch with 700 peers forwarding both ways."""
import pytest

from node.cjdns import labels
from node.cjdns.labels import V358, EncodingScheme, LabelError
from node.cjdns.paths import static_paths
from node.cjdns.switch import Switch, SwitchError
from node.cjdns.switch_header import SwitchHeader


def test_the_scheme_grows_with_the_highest_interface():
    assert labels.scheme_for_interfaces(0) is V358 and labels.scheme_for_interfaces(256) is V358
    hub = labels.scheme_for_interfaces(257)
    assert [tuple(vars(f).values()) for f in hub.forms] == [(3, 1, 1), (5, 2, 2), (9, 2, 0)]
    assert labels.scheme_for_interfaces(659).forms[-1].bit_count == 10
    assert labels.scheme_for_interfaces(8191).forms[-1].bit_count == 13
    with pytest.raises(LabelError, match="at most 8191"):
        labels.scheme_for_interfaces(8192)
    assert EncodingScheme.parse(hub.serialize()) == hub           # announced like any cjdns scheme
    assert not hub.legacy and V358.legacy


def test_generic_numbering_is_cjdns_parse_and_serialize_director():
    """EncodingScheme_serializeDirector for a scheme that is not V358: the number XOR 1 in the narrowest form it
    fits (so the router, interface 1, is the self route 0001); parseDirector inverts it."""
    hub = labels.scheme_for_interfaces(700)
    assert hub.one_hop_label(1) == 0b1_0001 and hub.compress(1, 4) == 0b0001
    assert hub.compress(0, 4) == 0b0011 and hub.compress(7, 4) == (6 << 1) | 1
    assert hub.bits_for_number(7) == 4 and hub.bits_for_number(8) == 7 and hub.bits_for_number(32) == 12
    assert hub.compress(40, 12) == (41 << 2)
    for n in range(hub.interfaces):
        bits = hub.bits_for_number(n)
        label = hub.one_hop_label(n)
        assert hub.bits_for_label(label) == bits and hub.decompress(label, bits) == n
        assert labels.is_one_hop(hub, label) and label <= 0xFFFF           # fits an announcement's peerNum
        if n == 1:
            continue                                                # the router has no wide form
        wide = hub.compress(n, hub.forms[-1].size) | (1 << hub.forms[-1].size)
        assert labels.convert_label(hub, wide, labels.CANONICAL) == label  # cjdns' generic re-encoding agrees
    with pytest.raises(LabelError):
        hub.compress(8, 4)
    biggest = labels.scheme_for_interfaces(8191)
    assert biggest.one_hop_label(8191) <= 0xFFFF


def test_v358_numbering_is_unchanged():
    for n in range(257):
        assert V358.one_hop_label(n) == labels.one_hop_label(n)
        bits = labels.bits_for_number(n)
        assert V358.compress(n, bits) == labels.compress(n, bits)


def test_a_hub_switch_numbers_700_peers_and_refuses_more_than_its_scheme():
    hub = Switch(scheme=labels.scheme_for_interfaces(700))
    for i in [0] + list(range(2, 701)):
        hub.add_interface(i)
    assert hub.num_interfaces == 1024
    with pytest.raises(SwitchError, match="0..1023"):
        hub.add_interface(1024)
    with pytest.raises(SwitchError):
        Switch().add_interface(257)                                 # V358: cjdns' 257 slots


def test_a_star_of_700_leaves_forwards_every_leaf_pair_both_ways():
    """Leaf -> hub -> leaf with labels from static_paths: the hub switches with V3_5_10; a leaf entering on a wide
    interface and leaving on a narrow one needs the forward director re-encoded (build_label), and the label that
    arrives, bit-reversed, leads back."""
    leaves = [f"x{k:03}" for k in range(700)]
    adj = {"hub": {leaf: (0 if k == 0 else k + 1) for k, leaf in enumerate(leaves)}}
    adj.update({leaf: {"hub": 0} for leaf in leaves})
    hub = Switch(scheme=labels.scheme_for_interfaces(700))
    for i in adj["hub"].values():
        hub.add_interface(i)
    leaf_switch = Switch()
    leaf_switch.add_interface(0)

    def send(src, label):
        (out_if, packet), = leaf_switch.receive(1, SwitchHeader(label=label).pack() + b"data")
        assert out_if == 0
        (dest_if, packet), = hub.receive(adj["hub"][src], packet)
        dest = next(leaf for leaf, i in adj["hub"].items() if i == dest_if)
        (to_router, packet), = leaf_switch.receive(0, packet)
        assert to_router == 1
        return dest, SwitchHeader.unpack(packet).label

    for src, dst in [("x650", "x003"), ("x003", "x650"), ("x000", "x699"), ("x040", "x041"), ("x699", "x000")]:
        label, via = static_paths(adj, src)[dst]
        assert via == ()
        reached, arrived = send(src, label)
        assert reached == dst
        assert send(dst, labels.bit_reverse64(arrived))[0] == src
    narrow_after_wide = labels.unsplice(static_paths(adj, "x650")["x003"][0], 0x13)
    assert hub.scheme.bits_for_label(narrow_after_wide) == 12       # re-encoded to the hub's 12-bit form
    assert hub.scheme.decompress(narrow_after_wide, 12) == adj["hub"]["x003"]


def test_a_wrong_self_route_in_a_wide_form_is_malformed():
    hub = Switch(scheme=labels.scheme_for_interfaces(300))
    hub.add_interface(0)
    # director 0 of the 7-bit form decodes to interface 1 (the router), but a self route must be 0001
    (back, err), = hub.receive(0, SwitchHeader(label=(1 << 7) | 0b0000010).pack() + b"data" * 4)
    assert back == 0 and hub.counters["drop_malformed_address"] == 1


def test_the_hub_router_hears_answers_on_interfaces_of_every_width():
    """The hub's own packets (link pings) out of a 4-, 7- and 12-bit interface: the peer answers on the reversed
    label, and the answer reaches the hub's router (the return hop of the router is 0001 in every width; Freifunk
    Altdorf's 659-peer hub heard no pong on its interfaces 8 and up before)."""
    hub = Switch(scheme=labels.scheme_for_interfaces(700))
    for i in [0] + list(range(2, 701)):
        hub.add_interface(i)
    leaf = Switch()
    leaf.add_interface(0)
    for i in (0, 7, 8, 32, 33, 700):
        (out_if, packet), = hub.receive(1, SwitchHeader(label=hub.label_for(i)).pack() + b"ping" * 4)
        assert out_if == i
        (to_router, packet), = leaf.receive(0, packet)
        assert to_router == 1
        back = labels.bit_reverse64(SwitchHeader.unpack(packet).label)
        (out_if, packet), = leaf.receive(1, SwitchHeader(label=back).pack() + b"pong" * 4)
        assert out_if == 0
        assert hub.receive(i, packet)[0][0] == 1, (i, hub.counters)
    assert "drop_malformed_address" not in hub.counters
