"""The live view's web server (aiohttp): one page, a stream of updates, and the teacher's actions.

    GET  /                      the page (static/index.html, app.js, style.css: no CDN, works offline)
    GET  /api/topology          nodes with their layout positions, links
    GET  /api/stream[?node=N]   server-sent events: "topology" and "backlog" once, then "tick" (links, nodes,
                                faults, new events) every TICK_S seconds, with node N's panel when asked for
    GET  /api/node/N            node N's panel once
    POST /api/fault  {"fault": "link-down a--b"}    apply a fault (checked to bite, as `pktlab fault`)
    POST /api/heal   {"id": "f3"} or {}             heal one fault or all of them
    POST /api/ping   {"a": "n1", "b": "n2"}         end-to-end ping, logged as a `ping` event

It binds 127.0.0.1 by default. Actions are root powers over the run, so requests must name this server in their
Host header (no DNS rebinding) and POSTs must be JSON from this origin (a page elsewhere cannot send them without a
CORS preflight, which is never granted).

`UiServer(mesh).start()` runs it on an event loop in a thread of its own and returns the URL; `pktlab ui` and the
demo use it that way.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from testbed import faults as F
from testbed.events import PING, EventLog, FILENAME as EVENTS_FILE
from testbed.ui.collect import Collector

STATIC = Path(__file__).parent / "static"
TICK_S = 0.5
PANEL_EVERY = 2          # a node's panel is refreshed every this many ticks (it asks the agent more)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class Hub:
    """Collects on a worker thread every tick and hands the result to every connected page."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.collector = Collector(mesh)
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="ui-collect")     # the collector is not shared
        self.actions = ThreadPoolExecutor(2, thread_name_prefix="ui-action")     # faults take seconds
        self.topology = dict(self.collector.topology(), fault_kinds=[
            {"kind": kind, "target": cls.TARGET, "main": cls.MAIN} for kind, cls in F.KINDS.items()])
        self.history = self.collector.backlog()
        self.subscribers: dict[asyncio.Queue, str | None] = {}
        self.panels: dict[str, dict] = {}
        self.ticks = 0

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                state = await loop.run_in_executor(self.reader, self.collector.tick)
                wanted = {n for n in self.subscribers.values() if n}
                if self.ticks % PANEL_EVERY == 0 or wanted - set(self.panels):
                    for n in wanted:
                        self.panels[n] = await loop.run_in_executor(self.reader, self.collector.node_panel, n)
                self.history = (self.history + state["events"])[-400:]
                self.ticks += 1
                for q, node in list(self.subscribers.items()):
                    msg = dict(state, panel=self.panels.get(node)) if node else state
                    if q.full():
                        q.get_nowait()          # a slow page skips a tick rather than piling them up
                    q.put_nowait(msg)
            except Exception as e:               # a bad tick (run removed, file gone) must not end the stream
                for q in self.subscribers:
                    if not q.full():
                        q.put_nowait({"error": f"{type(e).__name__}: {e}"})
            await asyncio.sleep(TICK_S)

    def close(self):
        self.reader.shutdown(wait=False, cancel_futures=True)
        self.actions.shutdown(wait=False, cancel_futures=True)


def sse(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def make_app(mesh, allowed_hosts: set[str] | None) -> web.Application:
    """The aiohttp application for one run; ``allowed_hosts`` None accepts any Host header (a wildcard bind)."""
    hub = Hub(mesh)

    @web.middleware
    async def guard(request, handler):
        if allowed_hosts is not None and request.host not in allowed_hosts:
            return web.json_response({"ok": False, "error": f"unexpected Host {request.host!r}"}, status=403)
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if request.content_type != "application/json" or (origin and origin != f"http://{request.host}"):
                return web.json_response({"ok": False, "error": "POST JSON from this page only"}, status=403)
        return await handler(request)

    async def index(request):
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def topology(request):
        return web.json_response(hub.topology)

    async def stream(request):
        node = request.query.get("node") or None
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue(maxsize=2)
        hub.subscribers[q] = node
        try:
            await resp.write(sse("topology", hub.topology))
            await resp.write(sse("backlog", hub.history))
            while True:
                msg = await q.get()
                await resp.write(sse("error" if "error" in msg else "tick", msg))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.subscribers.pop(q, None)
        return resp

    async def node_panel(request):
        loop = asyncio.get_running_loop()
        return web.json_response(await loop.run_in_executor(hub.reader, hub.collector.node_panel,
                                                            request.match_info["name"]))

    async def body(request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text='{"ok": false, "error": "body is not JSON"}',
                                     content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='{"ok": false, "error": "body must be a JSON object"}',
                                     content_type="application/json")
        return data

    async def act(fn, *args):
        try:
            return web.json_response(dict(ok=True, **await asyncio.get_running_loop().run_in_executor(
                hub.actions, fn, *args)))
        except (F.FaultError, ValueError) as e:
            return web.json_response({"ok": False, "error": str(e)}, status=400)

    def apply_fault(spec):
        f = F.apply_fault(mesh, spec, check=True)
        return {"id": f.id, "description": f.describe(), "effect": f.state.get("effect", "")}

    def heal(fault_id):
        healed = F.heal(mesh, fault_id, check=True)
        return {"healed": [{"id": f.id, "description": f.describe(), "measured": f.state.get("healed", "")}
                           for f in healed]}

    def ping(a, b):
        for n in (a, b):
            if n not in mesh.topo.nodes:
                raise ValueError(f"no node {n!r} in run {mesh.run.name}")
        rtt = mesh.ping(a, b, count=3)
        EventLog(mesh.run.path(EVENTS_FILE)).append(PING, node=a, src=a, dst=b, reachable=rtt is not None,
                                                     rtt_ms=rtt, by="ui")
        return {"a": a, "b": b, "rtt_ms": rtt}

    async def post_fault(request):
        spec = (await body(request)).get("fault")
        if not isinstance(spec, str) or not spec.strip():
            return web.json_response({"ok": False, "error": 'give "fault": "KIND TARGET [VALUE]"'}, status=400)
        return await act(apply_fault, spec)

    async def post_heal(request):
        fault_id = (await body(request)).get("id")
        if fault_id is not None and not isinstance(fault_id, str):
            return web.json_response({"ok": False, "error": '"id" must be a fault id such as "f1"'}, status=400)
        return await act(heal, fault_id)

    async def post_ping(request):
        data = await body(request)
        if not all(isinstance(data.get(k), str) for k in ("a", "b")):
            return web.json_response({"ok": False, "error": 'give "a" and "b": node names'}, status=400)
        return await act(ping, data["a"], data["b"])

    tasks = []

    async def start_hub(app):
        tasks.append(asyncio.create_task(hub.run()))

    async def stop_hub(app):
        for task in tasks:
            task.cancel()
        hub.close()

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/topology", topology)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/node/{name}", node_panel)
    app.router.add_post("/api/fault", post_fault)
    app.router.add_post("/api/heal", post_heal)
    app.router.add_post("/api/ping", post_ping)
    app.on_startup.append(start_hub)
    app.on_cleanup.append(stop_hub)
    return app


class UiServer:
    """The live view of one run, served from a thread of its own: ``url = UiServer(mesh).start()``, ``stop()``."""

    def __init__(self, mesh, host: str = "127.0.0.1", port: int = 0):
        self.mesh = mesh
        self.host = host
        self.port = port
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self, timeout: float = 15.0) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main():
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._serve())
            except BaseException as e:       # reported to start() below
                failure.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="pktlab-ui", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the live view did not start within {timeout:.0f} s")
        if failure:
            raise RuntimeError(f"the live view did not start on {self.host}:{self.port}: {failure[0]}")
        return self.url

    async def _serve(self):
        wildcard = self.host in ("0.0.0.0", "::", "")
        allowed = None
        if not wildcard:
            allowed = set()      # filled once the port is known
        app = make_app(self.mesh, allowed)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))      # port 0: the kernel picks a free one
        self.port = port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if allowed is not None:
            allowed.update({f"{h}:{port}" for h in LOCAL_HOSTS + (shown,)})
        self.url = f"http://{'127.0.0.1' if wildcard else shown}:{port}/"

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
