"""Loading a topology by what the user typed: a file path (native YAML/JSON, meshnet-lab JSON, GraphML, GML), a
generator string (``"grid:3x3,delay=5ms"``), a bundled example (``"default"``) or a bundled real mesh
(``"freifunk-ulm"``); and saving one in any format.

Disconnected graphs: ``load()`` rejects them for native files and generators unless the file says
``allow_disconnected: true``. Imported real-world data (meshnet-lab, GraphML, GML) is often disconnected (Freifunk
Aachen: 1977 nodes, its largest component 1259): ``load()`` keeps its largest component, with a warning.
``load(..., allow_disconnected=True)`` keeps every component of any source (a warning), ``False`` rejects them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from testbed.topology import formats, generators
from testbed.topology.check import validate
from testbed.topology.model import Topology
from testbed.topology.reader import from_dict, parse_text
from testbed.topology.units import TopologyError

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "topologies"


def bundled_examples() -> list[str]:
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


REAL_MESHES_DIR = BUNDLED_DIR / "meshnet-lab"


def real_meshes() -> dict[str, Path]:
    """The bundled meshnet-lab data sets by file stem ("freifunk-ulm", "two_hop", ...)."""
    return {p.stem: p for p in sorted(REAL_MESHES_DIR.glob("*/*.json"))}


def load(spec: str, *, seed: int | None = None, allow_disconnected: bool | None = None) -> Topology:
    """Load a topology from a file path, a generator string ("grid:3x3,delay=5ms") or a bundled example name
    ("default"), validate it and return it (warnings in ``topo.warnings``). ``seed`` overrides the file's
    seed; for generators a seed inside the string wins over it."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise TopologyError(f"{spec!r}: expected a file path, generator string or bundled example name")
    path = Path(spec)
    imported = False
    if _is_file(path):
        topo, imported = _load_file(path, spec)
        if seed is not None:
            topo.seed = seed
    elif generators.looks_like_generator(spec):
        topo = generators.generate(spec, seed=seed)
    elif "/" not in spec and (_is_file(BUNDLED_DIR / f"{spec}.yaml") or spec in real_meshes()):
        bundled = BUNDLED_DIR / f"{spec}.yaml"
        topo, imported = _load_file(bundled if _is_file(bundled) else real_meshes()[spec], spec)
        if seed is not None:
            topo.seed = seed
    else:
        raise TopologyError(
            f"{spec}: no such file, generator or bundled example; generators: "
            f"{', '.join(generators.FORMS)}; bundled examples: {', '.join(bundled_examples())}; "
            f"real meshes: {', '.join(real_meshes())}")
    if imported and allow_disconnected is None:
        whole = len(topo.nodes)
        topo = topo.largest_component()
        if len(topo.nodes) < whole:
            topo.warnings.append(f"{spec}: graph is disconnected: kept its largest component, {len(topo.nodes)} of "
                                 f"{whole} nodes (allow_disconnected / --allow-disconnected: every component)")
    topo.warnings = list(topo.warnings) + validate(topo, allow_disconnected)
    return topo


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # names too long, NUL bytes: not a file we can read
        return False


def _load_file(path: Path, source: str) -> tuple[Topology, bool]:
    """(the topology, whether it was imported from another tool's format)"""
    suffix = path.suffix.lower()
    if suffix in (".graphml", ".xml"):
        return formats.read_graphml(path, source), True
    if suffix == ".gml":
        return formats.read_gml(path, source), True
    if suffix not in (".yaml", ".yml", ".json"):
        raise TopologyError(f"{source}: unknown file type {suffix!r} (use .yaml, .yml, .json, .graphml or .gml)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TopologyError(f"{source}: cannot read: {e}") from None
    data = parse_text(text, source, "json" if suffix == ".json" else "yaml")
    if formats.is_meshnet_lab(data):
        return formats.from_meshnet_lab(data, source), True
    return from_dict(data, source), False


def _plain(value):
    """_DupDict and tuples -> plain dicts/lists for dumping."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dumps(topo: Topology, fmt: str = "yaml") -> str:
    d = _plain(topo.to_dict())
    if fmt == "json":
        return json.dumps(d, indent=2) + "\n"
    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)


def save(topo: Topology, path) -> None:
    """Write the native form: YAML for .yaml/.yml, JSON for .json; .graphml/.gml/.dot/.png via formats."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml", ".json"):
        path.write_text(dumps(topo, "json" if suffix == ".json" else "yaml"), encoding="utf-8")
        return
    writers = {".graphml": formats.write_graphml, ".gml": formats.write_gml,
               ".dot": formats.write_dot, ".gv": formats.write_dot, ".png": formats.draw_png}
    if suffix not in writers:
        raise TopologyError(f"{path}: unknown file type {suffix!r} (use .yaml, .json, .graphml, .gml, .dot or .png)")
    writers[suffix](topo, path)
