"""Client for the node agent's control API (JSON lines over a Unix socket).

    AgentClient(path).call("status")                   -> {"ok": True, "node": ..., ...}
    AgentClient(path).call("set_link", ifname="eth1", delay_s=0.05)

call() raises AgentError when the agent answers {"ok": false}; request() returns the raw answer.
"""

import json
import socket


class AgentError(Exception):
    pass


class AgentClient:
    def __init__(self, path, timeout=10.0):
        self.path = str(path)
        self.timeout = timeout

    def request(self, body, timeout=None):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout or self.timeout)
            sock.connect(self.path)
            sock.sendall(json.dumps(body).encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise AgentError(f"agent at {self.path} closed the connection without answering")
                buf += chunk
        return json.loads(buf.partition(b"\n")[0])

    def call(self, cmd, timeout=None, **args):
        answer = self.request(dict(args, cmd=cmd), timeout)
        if not answer.get("ok"):
            raise AgentError(answer.get("error", "unknown error"))
        return answer
