"""The miners' HTTP client: blocking requests (urllib) from their worker threads, with the bytes each request put
on the wire counted (request line, headers and body), so a miner knows how much announcement traffic it sent."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


class HttpError(OSError):
    """No answer, or an answer that is not what the caller needs; `status` when the server answered."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b""):
        super().__init__(message)
        self.status = status
        self.body = body


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10.0
            ) -> tuple[int, bytes, int]:
    """(status, body, bytes sent) of one request; a POST when `data` is given. HTTP errors come back as a status;
    a failed connection raises HttpError."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    path = urllib.parse.urlsplit(url)
    sent = len(f"{req.get_method()} {path.path or '/'} HTTP/1.1\r\n") + sum(
        len(k) + len(str(v)) + 4 for k, v in (headers or {}).items()) + len(data or b"") + 64
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), sent
    except urllib.error.HTTPError as e:
        return e.code, e.read(), sent
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise HttpError(f"{url}: {getattr(e, 'reason', e)}") from None


def get_json(url: str, timeout: float = 10.0) -> dict:
    status, body, _ = request(url, timeout=timeout)
    if status != 200:
        raise HttpError(f"{url}: HTTP {status}", status, body)
    try:
        return json.loads(body)
    except ValueError as e:
        raise HttpError(f"{url}: not JSON: {e}", status, body) from None


def get_bytes(url: str, timeout: float = 10.0) -> bytes:
    status, body, _ = request(url, timeout=timeout)
    if status != 200:
        raise HttpError(f"{url}: HTTP {status}", status, body)
    return body
