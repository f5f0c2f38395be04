"""The route server's bidirectional Dijkstra against networkx on random weighted graphs: the same cost, a path
that exists and avoids the steps it was told to, None exactly when there is no path."""
import networkx as nx
from hypothesis import given, settings, strategies as st

from node.route_server.search import cheapest


@st.composite
def graphs(draw):
    n = draw(st.integers(2, 25))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1),
                                    st.integers(1, 50).map(lambda w: w / 10)), max_size=80))
    adj = {i: {} for i in range(n)}
    for a, b, w in edges:
        if a != b:
            adj[a][b] = adj[b][a] = w
    steps = [(a, b) for a in adj for b in adj[a]]
    avoid = set(draw(st.lists(st.sampled_from(steps), max_size=6))) if steps else set()
    return adj, draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1)), avoid


@settings(max_examples=300)
@given(graphs())
def test_cheapest_matches_dijkstra(case):
    adj, s, t, avoid = case
    g = nx.DiGraph()
    g.add_nodes_from(adj)
    g.add_weighted_edges_from((a, b, w) for a in adj for b, w in adj[a].items() if (a, b) not in avoid)
    found = cheapest(adj, s, t, avoid)
    if not nx.has_path(g, s, t):
        assert found is None
        return
    cost, path = found
    assert abs(cost - nx.dijkstra_path_length(g, s, t)) < 1e-9
    assert path[0] == s and path[-1] == t
    steps = list(zip(path, path[1:]))
    assert all(b in adj[a] and (a, b) not in avoid for a, b in steps)
    assert abs(sum(adj[a][b] for a, b in steps) - cost) < 1e-9
