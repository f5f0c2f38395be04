"""pytest plugin: a running pktlab mesh as the `mesh` fixture.

    @pytest.mark.mesh("grid:3x3", scope="module", seed=7)
    def test_reroute(mesh):
        f = mesh.fault("link-down r1c1--r1c2")
        assert mesh.ping("r1c1", "r1c2") is None
        mesh.heal(f)
        mesh.wait_until(lambda: mesh.ping("r1c1", "r1c2"), 10, "r1c2 reachable again")

The topology is the marker's first argument (generator string, bundled name or file) or, with
`@pytest.mark.parametrize("mesh", ["line:3", "ring:4"], indirect=True)`, the parameter (a string, or a dict with
spec/scope/seed/wait). The fixture is a testbed.mesh.Mesh, the same object `Mesh.up` returns. `scope` is
function (default), class, module or session: tests in that scope with the
same topology and seed share one mesh; faults a test leaves behind are healed after it. On a test failure the
report gets the merged per-node agent logs and the run's event log.

Where the nodes live: namespaces on this machine, unless the marker says `hosts="inventory.yaml"` (SSH hosts,
testbed/backends/ssh.py) or `backend="vagrant"`; `pytest --pktlab-hosts inventory.yaml` sends every mesh of the
session to those hosts, so the same tests run unchanged across machines.

The package registers it as the `pktlab` pytest11 entry point, so any pytest of the project's venv has it.
"""
from __future__ import annotations

import os
import re

import pytest

SCOPES = ("function", "class", "module", "session")
MESH_KEY = pytest.StashKey()          # item -> the mesh its test used (for the failure report)
MESHES_KEY = pytest.StashKey()        # config -> {(scope owner, spec, seed): shared mesh}
LOG_TAIL = 300        # lines of merged agent log attached to a failure report
EVENT_TAIL = 200


def pytest_addoption(parser):
    parser.addoption("--pktlab-hosts", metavar="INVENTORY", default=None,
                     help="build every pktlab mesh on the SSH hosts of this inventory (YAML)")


def pytest_configure(config):
    config.addinivalue_line("markers", "mesh(spec, scope='function', seed=None, wait=60, hosts=None, "
                                       "backend=None): the topology of the `mesh` fixture (testbed.pytest_plugin)")


def _options(request) -> dict:
    opts = {"spec": None, "scope": "function", "seed": None, "wait": 60.0, "backend": None,
            "hosts": request.config.getoption("--pktlab-hosts", None)}
    marker = request.node.get_closest_marker("mesh")
    if marker is not None:
        if marker.args:
            opts["spec"] = marker.args[0]
        opts.update({k: v for k, v in marker.kwargs.items() if k in opts})
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        opts.update({k: v for k, v in param.items() if k in opts})
    elif param is not None:
        opts["spec"] = param
    if not opts["spec"]:
        raise pytest.UsageError(f"{request.node.nodeid}: the mesh fixture needs a topology: "
                                '@pytest.mark.mesh("grid:3x3") or indirect parametrization')
    if opts["scope"] not in SCOPES:
        raise pytest.UsageError(f"mesh scope {opts['scope']!r}: one of {', '.join(SCOPES)}")
    opts["backend"] = opts["backend"] or ("ssh" if opts["hosts"] else "netns")
    return opts


def _scope_node(request, scope):
    item = request.node
    if scope == "function":
        return item
    if scope == "session":
        return item.session
    kind = pytest.Class if scope == "class" else pytest.Module
    return item.getparent(kind) or item.getparent(pytest.Module) or item.session


@pytest.fixture
def mesh(request):
    if os.geteuid() != 0:
        pytest.skip("the mesh fixture needs root (network namespaces)")
    from testbed.mesh import Mesh
    opts = _options(request)
    owner = _scope_node(request, opts["scope"])
    cache = request.config.stash.setdefault(MESHES_KEY, {})
    key = (owner.nodeid, str(opts["spec"]), opts["seed"], opts["backend"], str(opts["hosts"]))
    handle = cache.get(key)
    if handle is None:
        where = {"backend": opts["backend"], **({"hosts": opts["hosts"]} if opts["hosts"] else {})}
        handle = Mesh.up(opts["spec"], seed=opts["seed"], wait=float(opts["wait"]), **where)
        cache[key] = handle

        def down():
            cache.pop(key, None)
            handle.down()
        if owner is request.node:
            request.addfinalizer(down)
        else:
            owner.addfinalizer(down)
    request.node.stash[MESH_KEY] = handle
    yield handle
    if owner is not request.node and key in cache:
        # a shared mesh: the next test starts without this test's faults
        from testbed.faults import FaultError, heal
        try:
            heal(handle, check=False)
        except (FaultError, OSError):
            pass


# -- failure reports ----------------------------------------------------------------------------------------

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def merged_agent_logs(run, tail: int | None = LOG_TAIL) -> str:
    """Every node's agent log, lines prefixed with the node and ordered by their timestamp."""
    lines = []
    nodes_dir = run.path("nodes")
    if not nodes_dir.is_dir():
        return ""
    for node_dir in sorted(nodes_dir.iterdir()):
        for name in ("agent.log", "agent.stderr"):
            path = node_dir / name
            if not path.is_file():
                continue
            last = ""
            with open(path, errors="replace") as f:
                for line in f:
                    m = _STAMP.match(line)
                    last = m.group(1) if m else last        # continuation lines keep their entry's time
                    lines.append((last, node_dir.name, line.rstrip("\n")))
    lines.sort(key=lambda x: x[0])
    if tail:
        lines = lines[-tail:]
    return "\n".join(f"{node:>8} | {text}" for _, node, text in lines)


def event_log_text(run, tail: int | None = EVENT_TAIL) -> str:
    path = run.path("events.jsonl")
    if not path.is_file():
        return ""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    return "\n".join(lines[-tail:] if tail else lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    handle = item.stash.get(MESH_KEY, None)
    if handle is None or not rep.failed or rep.when == "teardown":
        return
    run = handle.run
    try:
        handle.backend.collect_logs()   # agents on other hosts log there
        logs = merged_agent_logs(run)
        events = event_log_text(run)
    except (OSError, RuntimeError) as e:
        rep.sections.append(("pktlab", f"could not read the run's logs in {run.dir}: {e}"))
        return
    rep.sections.append((f"pktlab agent logs (run {run.name}, last {LOG_TAIL} lines, {run.dir}/nodes/*/)", logs))
    rep.sections.append((f"pktlab events ({run.dir}/events.jsonl)", events or "(no events)"))
