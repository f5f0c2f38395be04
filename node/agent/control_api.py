"""The agent's control API: a Unix stream socket speaking JSON lines.

Request:  {"cmd": "<name>", ...arguments}            one JSON object per line
Response: {"ok": true, ...} or {"ok": false, "error": "<message>"}

Handlers are registered by name. A handler is called as handler(request, respond) and either returns the
response body (a dict) or returns None and calls respond(body) later (for example `ping`, which waits for the
echo reply). Raising CommandError/ValueError/KeyError/TypeError gives {"ok": false, "error": ...}; a bad request
never stops the agent. Anything else a handler raises is a bug: it is answered as "internal error", counted in
``errors`` (node/agent/handler_errors.py) under ``control.<cmd>`` and logged once.
"""

import json
import logging
import os
import socket

from node.agent.handler_errors import HandlerErrors

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20


class CommandError(Exception):
    """Raised by a handler for a request it refuses (the message goes back to the client)."""


class ControlServer:
    def __init__(self, path, loop, handlers, errors=None, owner=None):
        self.path = path
        self.loop = loop
        self.handlers = handlers
        self.errors = errors if errors is not None else HandlerErrors(log)
        self.clients = {}
        if os.path.exists(path):
            os.unlink(path)     # a stale socket from a crashed run of the same node
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        if owner is not None:   # only that user (and root) may connect: the SSH user forwarding it, on a host
            os.chown(path, owner, -1)
        self.sock.listen(16)
        self.sock.setblocking(False)
        loop.add_reader(self.sock, self._accept)

    def _accept(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.clients[conn] = bytearray()
        self.loop.add_reader(conn, lambda: self._readable(conn))

    def _readable(self, conn):
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        buf = self.clients.get(conn)
        if buf is None:
            return
        buf += data
        if len(buf) > MAX_LINE and b"\n" not in buf:
            self._send(conn, {"ok": False, "error": "request line too long"})
            self._close(conn)
            return
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            if line.strip():
                self._handle(conn, line)

    def _handle(self, conn, line):
        def respond(body):
            self._send(conn, dict({"ok": True}, **body) if "ok" not in body else body)
        answer = self.answer(line, respond)
        if answer is not None:
            respond(answer)

    def answer(self, line, respond):
        """The answer to one request line (a dict), or None when the handler answers later through ``respond``."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"invalid JSON: {e}"}
        except RecursionError:
            return {"ok": False, "error": "invalid JSON: nested too deeply"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'request must be an object with a string "cmd"'}
        cmd = request["cmd"]
        handler = self.handlers.get(cmd)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}; known: {', '.join(sorted(self.handlers))}"}
        try:
            return handler(request, respond)
        except (CommandError, ValueError, KeyError, TypeError) as e:
            return {"ok": False, "error": f"{cmd}: {e}"}
        except Exception as e:
            self.errors.record(f"control.{cmd}", e)
            return {"ok": False, "error": f"{cmd}: internal error: {e}"}

    def _send(self, conn, body):
        if conn not in self.clients:
            return
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)
            conn.sendall(json.dumps(body).encode() + b"\n")
            conn.setblocking(False)
        except OSError:
            self._close(conn)

    def _close(self, conn):
        self.loop.remove_reader(conn)
        self.clients.pop(conn, None)
        conn.close()

    def close(self):
        for conn in list(self.clients):
            self._close(conn)
        self.loop.remove_reader(self.sock)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
