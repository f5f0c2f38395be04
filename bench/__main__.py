"""`make bench`: every benchmark in turn; each prints its table and writes bench/results/<name>.json.

`python -m bench [NAME ...]` runs only the named ones.
"""
import importlib
import sys
import time

BENCHMARKS = ["bringup", "dataplane", "route_server", "packetcrypt", "chain", "bandwidth_hard", "priority", "reroute",
              "congestion", "crosschain", "scale", "backends"]


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or BENCHMARKS
    failed = []
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"bench.{name}":
                raise
            print(f"== bench.{name}: not written yet, skipped")
            continue
        print(f"== bench.{name}")
        t0 = time.monotonic()
        try:
            code = module.main([]) if module.main.__code__.co_argcount else module.main()
        except SystemExit as e:
            code = e.code
        print(f"== bench.{name}: exit {code} after {time.monotonic() - t0:.0f} s")
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
