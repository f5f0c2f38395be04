"""Static path computation (BFS + spliced one-hop labels) and the static path provider."""

import pytest

from node.cjdns.paths import StaticPathProvider, static_paths
from node.cjdns import keys, labels


def test_worked_example_from_reference():
    # pkt-reference §2.3: A.if5 -> B(in if7) -> B.if20 -> C(in if2) -> C.if3 -> D(in if9) = 0xbceb
    adj = {"A": {"B": 5}, "B": {"A": 7, "C": 20}, "C": {"B": 2, "D": 3}, "D": {"C": 9}}
    paths = static_paths(adj, "A")
    assert paths["D"] == (0xBCEB, ())
    assert paths["B"] == (labels.one_hop_label(5), ())
    assert set(paths) == {"B", "C", "D"}


def test_wider_reverse_hop_reencodes_next_hop():
    # B receives on interface 40 (10-bit form) and sends on interface 2 (4-bit form): the director for
    # interface 2 must be widened, as build_label does (pkt-reference §2.4).
    adj = {"A": {"B": 0}, "B": {"A": 40, "C": 2}, "C": {"B": 0}}
    label, _ = static_paths(adj, "A")["C"]
    first = labels.one_hop_label(0)
    at_b = labels.unsplice(label, first)
    assert labels.bits_for_label(at_b) == 10
    assert labels.decompress(at_b, 10) == 2


def test_shortest_path_is_chosen_and_unreachable_skipped():
    # ring of 4 plus an isolated node: the opposite node is 2 hops away either way, neighbours 1 hop
    adj = {"a": {"b": 0, "d": 2}, "b": {"a": 0, "c": 2}, "c": {"b": 0, "d": 2}, "d": {"c": 0, "a": 2},
           "x": {}}
    paths = {dest: label for dest, (label, _) in static_paths(adj, "a").items()}
    assert "x" not in paths
    assert labels.log2(paths["b"]) == 4 and labels.log2(paths["d"]) == 4
    assert labels.log2(paths["c"]) == 8
    # deterministic: sorted neighbour order goes through b
    assert labels.routes_through(paths["c"], paths["b"])


def test_line_of_ten_fits_in_a_label():
    names = [f"n{i}" for i in range(10)]
    adj = {n: {} for n in names}
    for a, b in zip(names, names[1:]):
        adj[a][b] = 0
        adj[b][a] = 2
    assert static_paths(adj, "n0")["n9"] == (labels.splice_path([labels.one_hop_label(0)] * 9), ())


def test_asymmetric_adjacency_is_an_error():
    with pytest.raises(ValueError, match="missing"):
        static_paths({"a": {"b": 0}, "b": {}}, "a")
    with pytest.raises(ValueError, match="source"):
        static_paths({"a": {}}, "z")


def test_static_provider_lookup_replace_and_errors():
    ident = keys.Identity.from_seed(b"t", 1)
    table = {ident.ip6_text: {"public_key": ident.pubkey_text, "label": "0000.0000.0000.0153"}}
    p = StaticPathProvider(table)
    assert p.lookup(ident.ip6) == (ident.public_key, 0x153, ())
    assert p.describe() == table
    other = keys.Identity.from_seed(b"t", 2)
    with pytest.raises(ValueError, match="address is"):
        p.replace({ident.ip6_text: {"public_key": other.pubkey_text, "label": "0000.0000.0000.0013"}})
    assert p.lookup(ident.ip6) == (ident.public_key, 0x153, ())     # unchanged after a rejected table
    with pytest.raises(ValueError, match="label"):
        p.replace({ident.ip6_text: {"public_key": ident.pubkey_text, "label": "13"}})
    with pytest.raises(ValueError, match="IPv6"):
        p.replace({"nope": {"public_key": ident.pubkey_text, "label": "0000.0000.0000.0013"}})
    p.replace({})
    assert p.lookup(ident.ip6) is None


def _walk(adj, switches, source, label):
    """Send a packet from source's router through the pure switches; return (node, label) where it lands."""
    from node.cjdns.switch_header import SwitchHeader
    node, index, packet = source, 1, SwitchHeader(label=label).pack() + b"payload"
    for _ in range(20):
        (dest, out), = switches[node].receive(index, packet)
        if dest == 1:
            return node, SwitchHeader.unpack(out).label
        neighbour = next(n for n, i in adj[node].items() if i == dest)
        index, node, packet = adj[neighbour][node], neighbour, out
    raise AssertionError("loop")


@pytest.mark.parametrize("indexes", [(0, 2), (5, 40), (40, 2), (200, 3)])
def test_static_labels_route_through_real_switches_and_back(indexes):
    from node.cjdns.switch import Switch
    left, right = indexes
    names = [f"n{i}" for i in range(6)]
    adj = {n: {} for n in names}
    for a, b in zip(names, names[1:]):
        adj[a][b] = right
        adj[b][a] = left
    switches = {}
    for n in names:
        switches[n] = Switch()
        for i in adj[n].values():
            switches[n].add_interface(i)
    for dest, (label, via) in static_paths(adj, "n0").items():
        assert via == ()
        node, arrived = _walk(adj, switches, "n0", label)
        assert node == dest
        back, back_label = _walk(adj, switches, dest, labels.bit_reverse64(arrived))
        assert back == "n0"
