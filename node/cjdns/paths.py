"""Where the data plane gets a destination's key and switch label.

A path provider answers `lookup(ip6) -> (public_key32, label) | None` and takes `report_failure(ip6, label,
dead=None)` when the switch reports an error for that label (``dead``: the label to the far end of the link that
was undeliverable, when the error says which). StaticPathProvider serves a fixed table (the agent config's
"paths", replaceable at run time through the control API); a route-server client can replace it later behind
the same interface.

`static_paths(adjacency, source)` computes the labels for such a table: BFS shortest paths over the topology,
each path the splice of the one-hop labels of its links.
"""

from collections import deque

from node.cjdns import keys, labels


class PathProvider:
    """Interface of a path provider."""

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
        return {keys.ip6_text(ip6): {"public_key": keys.pubkey_text(pk), "label": labels.label_text(label)}
                for ip6, (pk, label) in self.table.items()}


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
        if not isinstance(entry, dict) or set(entry) != {"public_key", "label"}:
            raise ValueError(f'{at}: expected {{"public_key": "....k", "label": "xxxx.xxxx.xxxx.xxxx"}}')
        try:
            pk = keys.parse_pubkey_text(entry["public_key"])
        except ValueError as e:
            raise ValueError(f"{at}.public_key: {e}") from None
        if keys.address_for_key(pk) != ip6:
            raise ValueError(f"{at}.public_key: the key's address is {keys.ip6_text(keys.address_for_key(pk))}")
        try:
            label = labels.parse_label_text(entry["label"])
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{at}.label: {e}") from None
        if label < 2:
            raise ValueError(f"{at}.label: {entry['label']!r} is not a path to another node")
        out[ip6] = (pk, label)
    return out


def static_paths(adjacency, source):
    """Labels from source to every reachable node along BFS shortest paths.

    adjacency: {node: {neighbour: switch_index of the link at node}} (both directions must be present).
    Returns {dest: label}. Neighbours are visited in sorted order, so the result is deterministic.
    """
    if source not in adjacency:
        raise ValueError(f"source {source!r} is not in the adjacency map")
    parent = {source: None}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for neighbour in sorted(adjacency[node], key=str):
            if neighbour not in parent:
                if node not in adjacency.get(neighbour, {}):
                    raise ValueError(f"link {node}-{neighbour} is missing at {neighbour!r}")
                parent[neighbour] = node
                queue.append(neighbour)
    out = {}
    for dest in parent:
        if dest == source:
            continue
        path = [dest]
        while path[-1] != source:
            path.append(parent[path[-1]])
        path.reverse()
        out[dest] = path_label(adjacency, path)
    return out


def path_label(adjacency, path):
    """The spliced label for a node path [source, ..., dest]."""
    hops = []
    for i, node in enumerate(path):
        back = adjacency[node][path[i - 1]] if i > 0 else None
        forward = adjacency[node][path[i + 1]] if i + 1 < len(path) else None
        hops.append((labels.one_hop_label(back) if back is not None else None,
                     labels.one_hop_label(forward) if forward is not None else None))
    return labels.build_label(hops)[0]
