"""Where the data the tests, benches and scenarios use lives: all of it inside the repository.

The public test vectors are in tests/vectors/ (a checkout's, not installed); the meshnet-lab data sets are bundled
with the package (testbed/topologies/meshnet-lab/, MIT, see its README).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors" / "public.json"
MESHNET_LAB = ROOT / "testbed" / "topologies" / "meshnet-lab"
