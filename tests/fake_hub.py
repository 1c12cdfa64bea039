"""A Hugging Face hub on 127.0.0.1 for download tests: the endpoints huggingface_hub 2.4 calls, nothing more.

- GET  /api/models/{repo}[/revision/{rev}]?blobs=True  -> model_info(files_metadata=True)
- HEAD /{repo}/resolve/{rev}/{path}                    -> hf_hub_download's metadata (X-Repo-Commit, ETag, size)
- GET  /{repo}/resolve/{rev}/{path}                    -> the bytes (Range "bytes=N-" answered with 206)

Errors carry the X-Error-Code header huggingface_hub turns into RepositoryNotFoundError, GatedRepoError,
RevisionNotFoundError or RemoteEntryNotFoundError. A file can be served slowly, in small chunks, so a
test sees byte progress inside it. The loopback address is the only network any test touches.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
SLOW_CHUNK = 64 * 1024
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.gated: set[str] = set()
        self.slow: dict[tuple[str, str], float] = {}  # (repo, path) -> seconds between SLOW_CHUNK chunks
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self._server: ThreadingHTTPServer | None = None

    def add_folder(self, repo_id: str, folder: Path, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        files.update(extra or {})
        self.repos[repo_id] = files
        return files

    def downloads(self) -> list[str]:
        """Paths fetched with GET (file bodies), in order."""
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    # -- server --------------------------------------------------------------------------------

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def closed_port_url() -> str:
    """An http://127.0.0.1 address nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def use_hub(monkeypatch, url: str, cache: Path) -> None:
    """Point huggingface_hub at `url` and `cache`, online. It reads HF_ENDPOINT, HF_HUB_CACHE and
    HF_HUB_OFFLINE once, at import, into huggingface_hub.constants: set there, for this test only."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", constants.DOWNLOAD_CHUNK_SIZE)  # restored after
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)  # never send the machine user's token, even to loopback
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache / "no-token"))


def go_offline(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path))
        if (match := _API.match(path)) and body:
            return self._model_info(match["repo"], match["rev"] or "main")
        if match := _RESOLVE.match(path):
            return self._file(match["repo"], match["rev"], match["path"], body)
        self._error(404, "EntryNotFound")

    def _check_repo(self, repo: str, rev: str) -> dict[str, bytes] | None:
        if repo not in self.hub.repos:
            self._error(401, "RepoNotFound")  # as the hub answers anonymous requests for unknown repos
        elif repo in self.hub.gated:
            self._error(401, "GatedRepo")
        elif rev not in ("main", COMMIT):
            self._error(404, "RevisionNotFound")
        else:
            return self.hub.repos[repo]
        return None

    def _model_info(self, repo: str, rev: str) -> None:
        files = self._check_repo(repo, rev)
        if files is None:
            return
        siblings = []
        for name, data in files.items():
            sibling = {"rfilename": name, "size": len(data), "blobId": _sha1(data)}
            if name.endswith((".safetensors", ".bin", ".ckpt", ".msgpack")):
                sibling["lfs"] = {"size": len(data), "sha256": _sha256(data), "pointerSize": 134}
            siblings.append(sibling)
        payload = json.dumps({"id": repo, "sha": COMMIT, "private": False, "gated": False, "siblings": siblings})
        self._send(200, {"Content-Type": "application/json"}, payload.encode(), True)

    def _file(self, repo: str, rev: str, name: str, body: bool) -> None:
        files = self._check_repo(repo, rev)
        if files is None:
            return
        if name not in files:
            return self._error(404, "EntryNotFound")
        data = files[name]
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_sha256(data)}"', "Accept-Ranges": "bytes"}
        status, start = 200, 0
        if body and (m := re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))):
            status, start = 206, int(m[1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send(status, headers, data[start:], body, self.hub.slow.get((repo, name), 0.0))

    def _error(self, status: int, code: str) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": code}
        if code == "EntryNotFound":
            headers["X-Repo-Commit"] = COMMIT
        self._send(status, headers, b"{}", self.command != "HEAD")

    def _send(self, status: int, headers: dict, data: bytes, body: bool, pause: float = 0.0) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not body:
            return
        try:
            if not pause:
                self.wfile.write(data)
                return
            for i in range(0, len(data), SLOW_CHUNK):
                self.wfile.write(data[i:i + SLOW_CHUNK])
                self.wfile.flush()
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client cancelled


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
