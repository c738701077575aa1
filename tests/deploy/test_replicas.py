"""Replicas as they are deployed: two `autan serve` processes started together on one PostgreSQL,
behind nginx running `deploy/nginx.conf` as shipped but for its addresses. An account signs in
through one replica and carries on through the other; an answer streams through nginx while the
client saves it as the chat app does; the replica streaming it is killed; the conversation is
whole (what was shown is saved) and the next answer comes through nginx from the survivor."""

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from processes import free_port, wait_healthy

CONFIG = Path(__file__).parents[2] / "deploy" / "nginx.conf"
NGINX = "/usr/sbin/nginx"
PASSWORD = "a long passphrase 123"


@pytest.fixture
def database(postgres_url):
    """A database of its own on the tests' PostgreSQL, empty: the replicas make its schema."""
    from sqlalchemy import create_engine, text

    name = f"replicas_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


class Processes:
    def __init__(self, root: Path):
        self.root, self.running = root, {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("w")
        self.running[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        return self.running[name]

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for process in self.running.values():
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def deployment(database, tmp_path):
    """Replicas a and b (started at once, so both find an empty database) and nginx before them."""
    processes = Processes(tmp_path)
    ports = {"a": free_port(), "b": free_port()}
    for name, port in ports.items():
        processes.start(name, [sys.executable, "-m", "autan.cli", "serve", "smollm2", "--db", database, "--multi-user",
                               "--port", str(port), "--trusted-proxy", "127.0.0.1"])  # fmt: skip
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for name, url in urls.items():
            wait_healthy(url, processes.running[name], tmp_path / f"{name}.log")
        front = free_port()
        config = CONFIG.read_text()
        for old, new in ((":8001", f":{ports['a']}"), (":8002", f":{ports['b']}"), (":8000;", f":{front};"),
                         ("/var/log/nginx/autan.access.log", str(tmp_path / "access.log"))):  # fmt: skip
            assert old in config
            config = config.replace(old, new)
        (tmp_path / "nginx.conf").write_text(config)
        own = ["-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")]
        nginx = processes.start("nginx", [NGINX, *own, "-g", f"daemon off; pid {tmp_path}/nginx.pid;"])
        urls["nginx"] = f"http://127.0.0.1:{front}"
        wait_healthy(urls["nginx"], nginx, tmp_path / "error.log")
        yield urls, processes, database
    finally:
        processes.stop_all()


def running(url: str, cookies: httpx.Cookies) -> float:
    metrics = httpx.get(f"{url}/metrics", cookies=cookies).text
    found = re.search(r'^autan_requests_running\{model="smollm2"\} (\S+)$', metrics, re.M)
    return float(found[1]) if found else 0.0


def test_a_user_carries_on_through_another_replica_when_one_dies(deployment):
    urls, processes, database = deployment
    from autan.store.db import Store

    Store(database).accounts.create_user("alice", PASSWORD, admin=True)

    # signed in through a, known to b: the session is in the database
    signed = httpx.post(f"{urls['a']}/api/login", json={"username": "alice", "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    cookies = signed.cookies
    b = httpx.Client(base_url=urls["b"], cookies=cookies)
    assert b.get("/api/me").json()["user"] == "alice"
    chat = b.post("/api/conversations", json={"model": "smollm2"}).json()
    question = "Write a long poem about the sea, with many verses."
    asked = b.post(f"/api/conversations/{chat['id']}/messages", json={"role": "user", "content": question}).json()
    answer = b.post(f"/api/conversations/{chat['id']}/messages",
                    json={"role": "assistant", "parent_id": asked["id"], "status": "streaming"}).json()  # fmt: skip

    # the answer streams through nginx; the client saves what it has shown, as the app does
    front = httpx.Client(base_url=urls["nginx"], cookies=cookies, timeout=120)
    body = {"model": "smollm2", "messages": [{"role": "user", "content": question}], "stream": True,
            "max_tokens": 2000, "temperature": 0}  # fmt: skip
    shown, saved, killed = "", "", None
    try:
        with front.stream("POST", "/v1/chat/completions", json=body) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                shown += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                if killed is None and len(shown.split()) >= 20:
                    assert front.patch(f"/api/messages/{answer['id']}", json={"content": shown}).status_code == 200
                    saved = shown
                    streaming = [n for n in ("a", "b") if running(urls[n], cookies) >= 1]
                    assert len(streaming) == 1, streaming
                    killed = streaming[0]
                    processes.running[killed].kill()
    except httpx.HTTPError:
        pass  # the stream ends with its replica: what the client had shown is what counts
    assert killed is not None, f"the answer ended before the replica could be killed: {shown!r}"
    processes.running[killed].wait(timeout=30)
    survivor = "b" if killed == "a" else "a"

    # the conversation is whole, through nginx, and the user carries on there
    kept = front.get(f"/api/conversations/{chat['id']}").json()
    messages = {m["id"]: m for m in kept["messages"]}
    assert messages[asked["id"]]["content"] == question
    assert messages[answer["id"]]["content"] == saved and saved.strip()
    for turn in range(2):  # round robin meets the dead replica on one of the two
        hello = {"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": f"Hi {turn}"}]}
        again = front.post("/v1/chat/completions", json=hello)
        assert again.status_code == 200, again.text
        assert again.json()["choices"][0]["message"]["content"]
    follow_up = front.post(f"/api/conversations/{chat['id']}/messages",
                           json={"role": "user", "content": "Go on.", "parent_id": answer["id"]})  # fmt: skip
    assert follow_up.status_code == 200, follow_up.text
    assert len(front.get(f"/api/conversations/{chat['id']}").json()["messages"]) == 3
    assert processes.log(survivor).count("POST /v1/chat/completions 200") >= 2
