"""`autan pull hf:OWNER/REPO[:FILE]` against a small local HTTP server that answers as the
Hugging Face Hub does (model info, file listing, HEAD with the commit and ETag headers, ranged
GETs), reached through `HF_ENDPOINT`: a GGUF and a safetensors checkpoint are fetched into the
standard cache, an interrupted transfer resumes where it stopped, and both then run by name."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autan import registry
from checkpoints import hf_model, save_gguf, save_hf

pytestmark = pytest.mark.default_model
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(ThreadingHTTPServer):
    """Repositories {repo_id: {path: bytes}}; `cut` drops the first `times` GETs of a file after
    `at` bytes (a connection lost mid-transfer); every request's Range header is recorded."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.repos, self.ranges, self.cut = repos, [], {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "models"]:  # /api/models/OWNER/REPO[/revision/REV | /tree/REV]
            repo = "/".join(parts[2:4])
            files = self.server.repos.get(repo)
            if files is None:
                return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            if len(parts) > 4 and parts[4] == "tree":
                return self._json(
                    200, [{"type": "file", "path": f, "size": len(b), "oid": _oid(b)} for f, b in files.items()]
                )
            siblings = [{"rfilename": f} for f in files]
            return self._json(200, {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings, "private": False})
        if len(parts) >= 5 and parts[2] == "resolve":  # /OWNER/REPO/resolve/REV/PATH
            repo, path = "/".join(parts[:2]), "/".join(parts[4:])
            data = self.server.repos.get(repo, {}).get(path)
            if data is None:
                return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            return self._file(repo, path, data, body)
        self._json(404, {"error": "not found"})

    def _file(self, repo: str, path: str, data: bytes, body: bool) -> None:
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{_oid(data)}"', "Accept-Ranges": "bytes"}
        start = 0
        wanted = self.headers.get("Range")
        if body:
            self.server.ranges.append((path, wanted))
        if wanted and wanted.startswith("bytes="):
            start = int(wanted.removeprefix("bytes=").split("-")[0])
        self.send_response(206 if start else 200)
        for key, value in headers.items():
            self.send_header(key, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        cut = self.server.cut.get(path)
        if cut and cut["times"] > 0:
            cut["times"] -= 1
            self.wfile.write(data[start : max(start, cut["at"])])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection is lost: the client has fewer bytes than it was told
            return
        self.wfile.write(data[start:])

    def _json(self, status: int, doc: object, headers: dict | None = None) -> None:
        raw = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)


def _oid(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture
def hub(tmp_path):
    gguf = save_gguf(save_hf(hf_model("llama", seed=4), tmp_path / "src-hf"), tmp_path / "tiny.gguf").read_bytes()
    checkpoint = {f.name: f.read_bytes() for f in save_hf(hf_model("mistral", seed=5), tmp_path / "ckpt").iterdir()}
    repos = {
        "someone/tiny-GGUF": {"tiny.Q8.gguf": gguf, "README.md": b"# tiny\n"},
        "someone/tiny-two": {"a.gguf": gguf, "b.gguf": gguf},
        "someone/tiny-mistral": {**checkpoint, "picture.png": b"not fetched"},
        "someone/smol-GGUF": {"smol.Q4_1.gguf": registry.pull("smollm2", quiet=True).read_bytes()},
    }
    server = FakeHub(repos)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, tmp_path
    server.shutdown()


def autan(hub, *args: str) -> subprocess.CompletedProcess:
    server, tmp_path = hub
    env = {
        **os.environ,
        "HF_ENDPOINT": server.url,
        "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "AUTAN_HOME": str(tmp_path / "autan"),
    }
    return subprocess.run(
        [sys.executable, "-m", "autan.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_a_gguf_is_fetched_into_the_cache_and_runs_by_name(hub):
    server, tmp_path = hub
    pulled = autan(hub, "pull", "hf:someone/tiny-GGUF:tiny.Q8.gguf")
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip().splitlines()[-1])
    snapshot = tmp_path / "hf-cache" / "models--someone--tiny-GGUF" / "snapshots" / COMMIT
    assert path == snapshot / "tiny.Q8.gguf" and path.read_bytes() == server.repos["someone/tiny-GGUF"]["tiny.Q8.gguf"]
    listed = autan(hub, "list")
    assert "hf:someone/tiny-GGUF:tiny.Q8.gguf" in listed.stdout and "hugging face cache" in listed.stdout
    # the only GGUF of a repository needs no file name; the model then answers by its name
    assert autan(hub, "pull", "hf:someone/tiny-GGUF").stdout.strip().splitlines()[-1] == str(path)
    inspected = autan(hub, "inspect", "hf:someone/tiny-GGUF:tiny.Q8.gguf")
    assert inspected.returncode == 0 and "2 layers, dim 64" in inspected.stdout, inspected.stderr


def test_a_pulled_model_answers_by_its_hub_name(hub):
    pulled = autan(hub, "pull", "hf:someone/smol-GGUF")
    assert pulled.returncode == 0, pulled.stderr
    name = "hf:someone/smol-GGUF:smol.Q4_1.gguf"
    run = autan(hub, "run", name, "What is the capital of France?", "--temperature", "0", "--max-tokens", "30")
    assert run.returncode == 0, run.stderr
    assert "Paris" in run.stdout


def test_an_interrupted_transfer_resumes_where_it_stopped(hub):
    """Lost once, the transfer goes on from the bytes already written (huggingface_hub writes
    10 MiB at a time, and retries from there); lost for good, the pull fails with a plain error
    and leaves nothing half-written in the cache. (huggingface_hub 2.x downloads into a file of
    its own per process, so a pull that was killed starts again from zero.)"""
    server, tmp_path = hub
    chunk = 10 * 2**20
    data = os.urandom(3 * chunk + 12345)
    server.repos["someone/tiny-GGUF"]["weights.bin"] = data
    server.cut["weights.bin"] = {"at": 2 * chunk + 999, "times": 1}
    pulled = autan(hub, "pull", "hf:someone/tiny-GGUF:weights.bin")
    assert pulled.returncode == 0, pulled.stderr
    assert Path(pulled.stdout.strip().splitlines()[-1]).read_bytes() == data
    assert [r for p, r in server.ranges if p == "weights.bin"] == [None, f"bytes={2 * chunk}-"]  # not all again

    data = os.urandom(len(data))  # other bytes: the cache keeps blobs by their ETag
    server.repos["someone/tiny-GGUF"]["more.bin"] = data
    server.cut["more.bin"] = {"at": chunk + 999, "times": 100}  # the connection keeps dropping there
    failed = autan(hub, "pull", "hf:someone/tiny-GGUF:more.bin")
    assert failed.returncode == 1 and "could not fetch hf:someone/tiny-GGUF:more.bin" in failed.stderr
    assert "Traceback" not in failed.stderr
    cache = tmp_path / "hf-cache" / "models--someone--tiny-GGUF"
    assert not (cache / "snapshots" / COMMIT / "more.bin").exists()  # nothing half-written is left to load
    assert not list(cache.rglob("*.incomplete"))
    server.cut["more.bin"]["times"] = 0
    again = autan(hub, "pull", "hf:someone/tiny-GGUF:more.bin")
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip().splitlines()[-1]).read_bytes() == data


def test_a_checkpoint_repository_comes_without_its_other_files_and_loads(hub):
    pulled = autan(hub, "pull", "hf:someone/tiny-mistral")
    assert pulled.returncode == 0, pulled.stderr
    snapshot = Path(pulled.stdout.strip().splitlines()[-1])
    assert (snapshot / "config.json").is_file() and not (snapshot / "picture.png").exists()
    inspected = autan(hub, "inspect", "hf:someone/tiny-mistral")
    assert inspected.returncode == 0 and "window     8" in inspected.stdout, inspected.stderr


def test_what_cannot_be_fetched_is_said_plainly(hub):
    two = autan(hub, "pull", "hf:someone/tiny-two")
    assert two.returncode == 1 and "holds 2 GGUF files; name one: hf:someone/tiny-two:a.gguf" in two.stderr
    missing = autan(hub, "pull", "hf:someone/nothing:x.gguf")
    assert missing.returncode == 1 and "could not fetch hf:someone/nothing:x.gguf" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = autan(hub, "pull", "hf:../etc")
    assert bad.returncode == 1 and "does not name a repository" in bad.stderr
