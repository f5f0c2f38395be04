"""`pktlab ui [--run NAME] [--port P] [--host H]`: the live web view of a run (testbed/ui/)."""
from __future__ import annotations

import signal
import threading

from testbed.cli.common import attach, console, run_option
from testbed.console import styled


def cmd_ui(args):
    from testbed.ui.server import UiServer
    mesh = attach(args)
    server = UiServer(mesh, host=args.host, port=args.port)
    try:
        url = server.start()
    except RuntimeError as e:
        raise SystemExit(f"pktlab ui: {e}") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(styled(("warning: ", "yellow"), f"listening on {args.host}: anyone who reaches this port can "
                             "inject faults into the run"))
    print(url, flush=True)
    console.print(f"live view of run {mesh.run.name}; Ctrl-C stops it")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def register(add) -> None:
    sp = add("ui", cmd_ui, "serve a live web view of a run (map, node panels, events, faults, ping) on "
                           "127.0.0.1, a random port unless --port")
    run_option(sp)
    sp.add_argument("--port", type=int, default=0, help="TCP port (default: a free one, printed)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
