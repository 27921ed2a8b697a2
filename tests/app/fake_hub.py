"""A fake Hugging Face endpoint on 127.0.0.1, answering the way the Hub does.

`HEAD|GET /{repo}/resolve/{revision}/{file}` answers 302 to a CDN server (another
origin, as on the real Hub) with the
headers huggingface_hub reads (X-Repo-Commit, ETag and X-Linked-Etag = SHA-256,
X-Linked-Size); the CDN path serves the bytes with Range support;
`/api/models/{repo}/tree/{revision}` lists files. Errors carry the Hub's X-Error-Code.
Switches let tests break things: drop the connection after some bytes, go down,
corrupt the payload, gate a repository.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    valid_token: str = "hf_test_token"
    corrupt: bool = False  # serve altered bytes under the right SHA-256
    drop_after_bytes: int | None = None  # close the connection after this many body bytes, once
    down: bool = False  # every CDN request fails at once
    down_after_drop: bool = False  # the drop above is the server going down
    claimed_sizes: dict[tuple[str, str], int] = field(default_factory=dict)  # advertise another size
    cdn_origin: str = ""  # another origin, as the Hub's CDN is: huggingface_hub stops at its redirect
    seconds_per_mb: float = 0.0  # a slow network, so a test can act mid-download
    bytes_sent: int = 0
    range_starts: list[int] = field(default_factory=list)
    # requests that carried an Authorization header, to the Hub's API and file URLs and to the CDN
    authorization_seen: dict[str, int] = field(default_factory=lambda: {"hub": 0, "cdn": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: HubState  # set on the subclass made per server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._route(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._route(head=False)

    def _route(self, head: bool) -> None:
        path = self.path.split("?")[0]
        if self.headers.get("Authorization"):
            with self.state.lock:
                self.state.authorization_seen["cdn" if path.startswith("/cdn/") else "hub"] += 1
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path):
            return self._tree(m.group(1))
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(m.group(1), m.group(3))
        if m := re.fullmatch(r"/cdn/([^/]+/[^/]+)/(.+)", path):
            return self._cdn(m.group(1), m.group(2), head)
        self._error(404, "EntryNotFound")

    def _authorised(self, repo: str) -> bool:
        return repo not in self.state.gated or self.headers.get("Authorization") == f"Bearer {self.state.valid_token}"

    def _repo_exists(self, repo: str) -> bool:
        return any(r == repo for r, _ in self.state.files)

    def _error(self, status: int, code: str) -> None:
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _tree(self, repo: str) -> None:
        if not self._repo_exists(repo):
            return self._error(404, "RepoNotFound")
        if not self._authorised(repo):
            return self._error(401, "GatedRepo")
        listing = [
            {"type": "file", "path": name, "size": len(data), "oid": "0" * 40,
             "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}
            for (r, name), data in sorted(self.state.files.items()) if r == repo
        ]  # fmt: skip
        body = json.dumps(listing).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _resolve(self, repo: str, name: str) -> None:
        if not self._repo_exists(repo):
            return self._error(404, "RepoNotFound")
        if not self._authorised(repo):
            return self._error(401, "GatedRepo")
        data = self.state.files.get((repo, name))
        if data is None:
            return self._error(404, "EntryNotFound")
        sha = hashlib.sha256(data).hexdigest()
        self.send_response(302)
        self.send_header("Location", f"{self.state.cdn_origin}/cdn/{repo}/{name}")
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{sha}"')
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(self.state.claimed_sizes.get((repo, name), len(data))))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _cdn(self, repo: str, name: str, head: bool) -> None:
        data = self.state.files.get((repo, name))
        if data is None:
            return self._error(404, "EntryNotFound")
        if self.state.down:
            self.close_connection = True
            return
        if self.state.corrupt:
            data = data[:100] + bytes(b ^ 0xFF for b in data[100:200]) + data[200:]
        start = 0
        if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(m.group(1))
        with self.state.lock:
            self.state.range_starts.append(start)
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if head:
            return
        limit = self.state.drop_after_bytes
        if limit is not None:
            self.state.drop_after_bytes = None  # drop once
            self.state.down = self.state.down_after_drop
            body = body[:limit]
            self.close_connection = True
        for offset in range(0, len(body), 1 << 20):
            piece = body[offset : offset + (1 << 20)]
            try:
                self.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                return
            with self.state.lock:
                self.state.bytes_sent += len(piece)
            if self.state.seconds_per_mb:
                time.sleep(self.state.seconds_per_mb)


class FakeHub:
    """The Hub and its CDN: two servers on 127.0.0.1 (two origins), one shared state."""

    def __init__(self) -> None:
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
        for server in self.servers:
            server.daemon_threads = True
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self.servers]
        self.state.cdn_origin = self._origin(self.servers[1])

    @staticmethod
    def _origin(server: ThreadingHTTPServer) -> str:
        host, port = server.server_address
        return f"http://{host}:{port}"

    @property
    def endpoint(self) -> str:
        return self._origin(self.servers[0])

    def add_file(self, repo: str, name: str, data: bytes) -> str:
        self.state.files[(repo, name)] = data
        return hashlib.sha256(data).hexdigest()

    def __enter__(self) -> FakeHub:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
