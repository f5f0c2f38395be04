"""Where the data plane gets a destination's key and switch label.

A path provider answers `lookup(ip6) -> (public_key32, label, via) | None` (``via``: the labels of the segments
after the first for a path longer than a label, node/cjdns/waypoints.py; usually empty) and takes
`report_failure(ip6, label, dead=None)` when the switch reports an error for that label (``dead``: the label to the
far end of the link that was undeliverable, when the error says which). StaticPathProvider serves a fixed table
(the agent config's "paths", replaceable at run time through the control API); a route-server client can replace
it later behind the same interface.

`static_paths(adjacency, source)` computes the routes for such a table: BFS shortest paths over the topology, each
path the splice of the one-hop labels of its links, cut into waypoint segments where it does not fit one label.
Every node switches with the scheme its highest interface number needs (labels.scheme_for_interfaces).
"""

from collections import deque

from node.cjdns import keys, labels
from node.cjdns.waypoints import LABEL_BITS_WITH_RETURN, split


class PathProvider:
    """Interface of a path provider. ``asks``: a miss is being asked for (the data plane holds the packet until the
    path comes) rather than final."""

    asks = False

    def lookup(self, ip6):
        raise NotImplementedError

    def report_failure(self, ip6, label, dead=None):
        pass

    def describe(self):
        return {}


class StaticPathProvider(PathProvider):
    """A fixed table {ip6 text: {"public_key": "....k", "label": "xxxx.xxxx.xxxx.xxxx"}}."""

    def __init__(self, table=None):
        self.table = {}
        self.failures = {}
        self.replace(table or {})

    def replace(self, table):
        """Validate and install a new table; on error the old table stays and ValueError names the entry."""
        self.table = parse_path_table(table)

    def lookup(self, ip6):
        return self.table.get(ip6)

    def report_failure(self, ip6, label, dead=None):
        key = keys.ip6_text(ip6)
        self.failures[key] = self.failures.get(key, 0) + 1

    def describe(self):
        return {keys.ip6_text(ip6): path_entry(pk, label, via) for ip6, (pk, label, via) in self.table.items()}


def path_entry(public_key, label, via=()) -> dict:
    """One entry of a path table: {"public_key", "label"} and, for a path with waypoints, "via"."""
    entry = {"public_key": keys.pubkey_text(public_key), "label": labels.label_text(label)}
    if via:
        entry["via"] = [labels.label_text(v) for v in via]
    return entry


def _route_label(text, at):
    try:
        label = labels.parse_label_text(text)
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"{at}: {e}") from None
    if label < 2:
        raise ValueError(f"{at}: {text!r} is not a path to another node")
    return label


def parse_path_table(table, where="paths"):
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected an object mapping ip6 -> {{public_key, label}}")
    out = {}
    for ip6_text, entry in table.items():
        at = f"{where}[{ip6_text!r}]"
        try:
            ip6 = keys.parse_ip6_text(ip6_text)
        except ValueError as e:
            raise ValueError(f"{at}: {e}") from None
        if not isinstance(entry, dict) or not {"public_key", "label"} <= set(entry) <= {"public_key", "label", "via"}:
            raise ValueError(f'{at}: expected {{"public_key": "....k", "label": "xxxx.xxxx.xxxx.xxxx"}} and '
                             f'optionally "via": [labels of the segments after the first]')
        try:
            pk = keys.parse_pubkey_text(entry["public_key"])
        except ValueError as e:
            raise ValueError(f"{at}.public_key: {e}") from None
        if keys.address_for_key(pk) != ip6:
            raise ValueError(f"{at}.public_key: the key's address is {keys.ip6_text(keys.address_for_key(pk))}")
        label = _route_label(entry["label"], f"{at}.label")
        via = entry.get("via", [])
        if not isinstance(via, list) or len(via) > MAX_WAYPOINTS:
            raise ValueError(f"{at}.via: expected a list of at most {MAX_WAYPOINTS} labels")
        out[ip6] = (pk, label, tuple(_route_label(v, f"{at}.via[{i}]") for i, v in enumerate(via)))
    return out


MAX_WAYPOINTS = 64


def static_paths(adjacency, source):
    """Routes from source to every reachable node along BFS shortest paths.

    adjacency: {node: {neighbour: switch_index of the link at node}} (both directions must be present).
    Returns {dest: (label, via)} (``via``: the labels of the waypoint segments after the first, usually empty).
    Neighbours are visited in sorted order, so the result is deterministic. The labels are built along the BFS
    tree, one splice per node: a route is its parent's extended by one hop (the same segments as
    waypoints.split of the whole path).
    """
    if source not in adjacency:
        raise ValueError(f"source {source!r} is not in the adjacency map")
    scheme = {}

    def scheme_of(node):
        if node not in scheme:
            scheme[node] = labels.scheme_for_interfaces(max(adjacency[node].values(), default=0))
        return scheme[node]

    parent = {source: None}
    # per node: (finished segments, the current segment's label, the node it starts at)
    route = {source: ((), 1, source)}
    out = {}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for neighbour in sorted(adjacency[node], key=str):
            if neighbour in parent:
                continue
            if node not in adjacency.get(neighbour, {}):
                raise ValueError(f"link {node}-{neighbour} is missing at {neighbour!r}")
            parent[neighbour] = node
            route[neighbour] = done, label, _ = _extend(route[node], node, parent[node], neighbour, adjacency,
                                                        scheme_of)
            segments = done + (label,)
            out[neighbour] = segments[0], segments[1:]
            queue.append(neighbour)
    return out


def _extend(route, node, previous, nxt, adjacency, scheme_of):
    """The route to ``nxt`` from the route to ``node`` (reached from ``previous``): the current segment grows by
    one hop if the label still fits, else ``node`` becomes a waypoint and a new segment starts there."""
    done, label, start = route
    s = scheme_of(node)
    forward = s.one_hop_label(adjacency[node][nxt])
    widened = forward
    if node != start:   # a middle node: the forward director is at least as wide as the one back (build_label)
        back = s.one_hop_label(adjacency[node][previous])
        if s.form_of(back).size > s.form_of(forward).size:
            widened = labels.convert_label(s, forward, s.get_form_num(back))
    arrive = scheme_of(nxt).form_of(scheme_of(nxt).one_hop_label(adjacency[nxt][node])).size
    need = labels.log2(label) + labels.log2(widened)
    if need <= labels.MAX_LABEL_BITS and (arrive <= 4 or need + arrive <= LABEL_BITS_WITH_RETURN):
        return done, labels.splice(widened, label), start
    return done + (label,), forward, node


def path_label(adjacency, path):
    """(label, via) for a node path [source, ..., dest]: waypoints.split of its hops."""
    hops, schemes = [], []
    for i, node in enumerate(path):
        s = labels.scheme_for_interfaces(max(adjacency[node].values(), default=0))
        back = adjacency[node][path[i - 1]] if i > 0 else None
        forward = adjacency[node][path[i + 1]] if i + 1 < len(path) else None
        hops.append((s.one_hop_label(back) if back is not None else None,
                     s.one_hop_label(forward) if forward is not None else None))
        schemes.append(s)
    segments = [s.label for s in split(hops, schemes)]
    return segments[0], tuple(segments[1:])
