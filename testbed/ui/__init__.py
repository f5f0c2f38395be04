"""The live web view of a run: `pktlab ui [--run NAME] [--port P]`, or from Python (the demo)::

    from testbed.ui import start_background
    ui = start_background("demo")      # a run name (None: the only run) or a testbed.mesh.Mesh
    print(ui.url)                      # http://127.0.0.1:PORT/
    ui.stop()

Modules: layout (node positions, networkx), collect (what the page shows, read from the run and its agents), server
(aiohttp: the page, server-sent events, the teacher's actions), static/ (the page: hand-written SVG and JS).
"""
from __future__ import annotations


def start_background(run=None, host: str = "127.0.0.1", port: int = 0):
    """Serve the live view of a run (a name, None for the only run, or a Mesh) from a background thread; returns the
    started UiServer, whose ``url`` is the page and ``stop()`` ends it."""
    from testbed.mesh import Mesh
    from testbed.ui.server import UiServer
    mesh = run if isinstance(run, Mesh) else Mesh.attach(run)
    server = UiServer(mesh, host=host, port=port)
    server.start()
    return server
