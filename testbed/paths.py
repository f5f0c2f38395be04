"""Where the project's shared material lives: `../shared` beside the checkout (spec, test vectors, meshnet-lab data).

CI clones the repository with shared/ beside it, as the development machines have it; PKTLAB_SHARED overrides.
"""
import os
from pathlib import Path

SHARED = Path(os.environ.get("PKTLAB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
VECTORS = SHARED / "spec" / "vectors" / "public.json"
MESHNET_LAB = SHARED / "data" / "meshnet-lab"
