"""Conformance runner: `python -m node.conformance FILE.json [FILE.json ...]`.

Runs every vector of files in the schema of tests/vectors/README.md and prints one line per vector
(`PASS id`, `FAIL id: why`, `UNSUPPORTED id: kind`) and a closing `N passed, N failed` line. Unsupported kinds
count as failures; the exit status is 0 only if nothing failed.

Each protocol area registers its checks in a `vectors` module holding `CHECKS = {kind: check(vector)}`; a check
returns None when the implementation reproduces the vector and raises `Mismatch` (or any exception) when not.
"""
from __future__ import annotations

import importlib
import json
import sys

# kind prefix -> module with CHECKS; imported lazily so one broken area does not hide the others
CHECK_MODULES = {
    "cjdns.": "node.cjdns.vectors",
    "packetcrypt.": "node.chain.packetcrypt.vectors",
    "market.": "node.market.vectors",
    "route_server.": "node.route_server.vectors",
}


class Mismatch(AssertionError):
    """The implementation's answer differs from the vector's."""


def expect(name: str, got, want) -> None:
    """Raise Mismatch naming the field when got != want."""
    if got != want:
        raise Mismatch(f"{name}: got {got!r}, want {want!r}")


def _checks_for(kind: str) -> dict:
    for prefix, module in CHECK_MODULES.items():
        if kind.startswith(prefix):
            try:
                return importlib.import_module(module).CHECKS
            except ImportError:
                return {}
    return {}


def run_vector(vector: dict) -> tuple[str, str]:
    """Return (status, detail) with status one of PASS, FAIL, UNSUPPORTED."""
    kind = vector.get("kind", "")
    check = _checks_for(kind).get(kind)
    if check is None:
        return "UNSUPPORTED", kind
    try:
        check(vector)
    except Exception as e:  # any exception is a failure of this vector, never of the runner
        return "FAIL", f"{type(e).__name__}: {e}" if not isinstance(e, Mismatch) else str(e)
    return "PASS", ""


def run_file(path: str, out=sys.stdout) -> tuple[int, int]:
    with open(path) as f:
        doc = json.load(f)
    passed = failed = 0
    for vector in doc.get("vectors", []):
        status, detail = run_vector(vector)
        vid = vector.get("id", "?")
        if status == "PASS":
            passed += 1
            print(f"PASS {vid}", file=out)
        else:
            failed += 1
            print(f"{status} {vid}: {detail}", file=out)
    return passed, failed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    passed = failed = 0
    for path in argv:
        try:
            p, f = run_file(path)
        except (OSError, ValueError) as e:
            print(f"FAIL {path}: cannot read vector file: {e}")
            p, f = 0, 1
        passed += p
        failed += f
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
