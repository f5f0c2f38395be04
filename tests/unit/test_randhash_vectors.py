"""RandGen/RandHash public vectors, on the pure-Python path and (when built) the C accelerator."""
from testbed.paths import VECTORS
import copy
import json

import pytest

from node.chain.packetcrypt import randhash, randhash_vectors
from node.conformance import Mismatch

KINDS = ("packetcrypt.randgen", "packetcrypt.randhash_program", "packetcrypt.randhash_opcode",
         "packetcrypt.randhash_mkitem2")
VECTORS = [v for v in json.loads(VECTORS.read_text())["vectors"]
           if v["kind"] in KINDS]
PATHS = [False] + ([True] if randhash.accel_available() else [])


@pytest.fixture(params=PATHS, ids=lambda a: "C" if a else "python")
def only_path(request, monkeypatch):
    """Make the vector checks run on exactly one implementation."""
    monkeypatch.setattr(randhash_vectors, "_paths", lambda: [request.param])
    if not request.param:
        monkeypatch.setattr(randhash, "accel_available", lambda: False)   # opcode check: skip its C leg
    return request.param


def test_all_kinds_present():
    assert {v["kind"] for v in VECTORS} == set(KINDS)
    assert sum(v["kind"] == "packetcrypt.randhash_opcode" for v in VECTORS) == 189


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector, only_path):
    randhash_vectors.CHECKS[vector["kind"]](vector)


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_vector_fails(kind, only_path):
    vector = copy.deepcopy(next(v for v in VECTORS if v["kind"] == kind))
    want = vector["outputs"] if "outputs" in vector else vector
    key = vector["check"][-1]
    value = want[key]
    if isinstance(value, list):
        want[key] = value[:-1] + ["%08x" % (int(value[-1], 16) ^ 1)]
    elif isinstance(value, int):
        want[key] = value + 1
    else:
        want[key] = ("0" if value[0] != "0" else "1") + value[1:]
    with pytest.raises(Mismatch):
        randhash_vectors.CHECKS[kind](vector)


def test_vectors_module_merged_into_packetcrypt_checks():
    from node.chain.packetcrypt import vectors
    for kind in KINDS:
        assert kind in vectors.CHECKS
