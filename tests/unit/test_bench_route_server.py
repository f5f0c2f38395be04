"""bench.route_server's over-the-mesh part, small: every query over the in-memory grid is answered (the bench
counted 172 of 200 unanswered while it did not let the server serve its backlog). No timing is checked."""
from bench.route_server import run_mesh


def test_every_query_over_the_mesh_is_answered():
    r = run_mesh(n=3, queries=20)
    assert r["mesh_nodes"] == 9 and r["mesh_queries"] == 20
    assert r["mesh_query_unanswered"] == 0, r
