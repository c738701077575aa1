"""Cost and availability, tried as a careless or hostile client would: huge bodies, clients that
leave, templates that never end, monstrous stop strings, an engine that dies, a queue rushed all
at once. Each gets a clear 4xx/5xx (or its work aborted), and the server goes on for everyone."""

import asyncio
import threading
import time

import httpx
import pytest

from autan.engine.engine import EngineConfig
from autan.http.auth import Policy
from autan.server.app import Limits, create_app
from autan.server.served import load_served
from autan.tokenizer.template import TemplateLimits
from checkpoints import tiny_with_template

ASK = [{"role": "user", "content": "hello"}]


@pytest.fixture
def serve(chatml_path):
    """ServedModels of the tiny ChatML model (each its own engine), closed after the test."""
    made = []

    def make(name="tiny", path=None, **config):
        made.append(load_served(f"{name}={path or chatml_path}", EngineConfig(**config)))
        return made[-1]

    yield make
    for m in made:
        m.engine.close()


def slow(served, seconds=0.05):
    """Every engine step of `served` takes at least `seconds` (as a big model's would)."""
    model = served.engine.engine.model
    run = model.run

    def slowly(*args, **kwargs):
        time.sleep(seconds)
        return run(*args, **kwargs)

    model.run = slowly


def finished(served, reason):
    return served.engine.engine.stats().finished.get(reason, 0)


def wait_idle(served):
    engine = served.engine.engine
    deadline = time.monotonic() + 300  # a safety net on a loaded machine, not a speed bound
    while (engine.has_work or engine.stats().running) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not engine.has_work


def test_an_oversized_body_is_refused_before_it_is_read(serve, live):
    """Finding 6: a 50 MB prompt took ~50 s of CPU and 6.4 GiB before its 400."""
    server = live(create_app([serve()], limits=Limits(max_body_bytes=1 << 20)))
    big = b'{"model": "tiny", "messages": [{"role": "user", "content": "' + b"x" * (2 << 20) + b'"}]}'
    declared = httpx.post(
        f"{server.url}/v1/chat/completions", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413 and "limit is 1048576" in declared.json()["message"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 65536

    streamed = httpx.post(
        f"{server.url}/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and "stopped reading there" in streamed.json()["message"]
    assert httpx.post(f"{server.url}/v1/chat/completions", json={"model": "tiny", "messages": ASK, "max_tokens": 2})


def test_a_prompt_that_cannot_fit_is_refused_before_it_is_tokenized(serve, monkeypatch):
    from fastapi.testclient import TestClient

    served = serve()
    calls = []
    encode = served.tokenizer.encode_chat
    monkeypatch.setattr(served.tokenizer, "encode_chat", lambda *a, **k: calls.append(1) or encode(*a, **k))
    client = TestClient(create_app([served]), base_url="http://127.0.0.1")
    long = [{"role": "user", "content": "word " * 200_000}]  # 1 MB for a context of 512 tokens
    refused = client.post("/v1/chat/completions", json={"model": "tiny", "messages": long})
    assert refused.status_code == 400 and "make at least" in refused.json()["message"]
    assert calls == []  # never tokenized
    assert (
        client.post("/v1/chat/completions", json={"model": "tiny", "messages": ASK, "max_tokens": 2}).status_code == 200
    )
    assert calls == [1]


def test_a_non_streamed_request_whose_client_left_is_aborted(serve, live):
    """Finding 7: a non-streamed request ran to max_tokens after its client had gone."""
    served = serve()
    slow(served)
    server = live(create_app([served]))
    body = {"model": "tiny", "messages": ASK, "max_tokens": 400, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=1.5)
    wait_idle(served)  # 400 steps of 50 ms would take 20 s: aborted, it ends at once
    assert finished(served, "abort") == 1 and finished(served, "length") == 0
    assert served.engine.engine.pool.n_used == 0


def test_a_cancel_while_the_prompt_is_encoded_is_not_lost(serve):
    served = serve()
    engine = served.engine
    entered, release = threading.Event(), threading.Event()
    encode = engine.engine.tokenizer.encode_chat

    def slow_encode(*args, **kwargs):
        entered.set()
        release.wait(60)
        return encode(*args, **kwargs)

    engine.engine.tokenizer.encode_chat = slow_encode

    async def main():
        task = asyncio.create_task(engine.add_request(ASK, request_id="gone"))
        await asyncio.to_thread(entered.wait, 60)
        task.cancel()  # the caller leaves while the prompt is still being encoded
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    asyncio.run(main())
    wait_idle(served)
    assert finished(served, "abort") == 1 and engine.engine.pool.n_used == 0


LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    "template, message",
    [
        (LOOPS, "took more than"),
        ("{{ range(10**7) | list }}", "Range too big"),
        ("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "recursed too deeply"),
        ("{{ 'a' * 300000000 }}", "repeats a value to more than"),
    ],
)
def test_a_template_that_runs_away_ends_in_a_clear_error_and_holds_nobody_up(serve, live, tmp_path, template, message):
    """Finding 8: a template with nested loops stalled /v1 for every model; others gave 500s."""
    bad = serve("bad", tiny_with_template(tmp_path, "bad", template))
    bad.tokenizer.template.limits = TemplateLimits(seconds=20)
    good = serve("good")
    server = live(create_app([bad, good]))
    result: dict = {}

    def ask_bad():
        result["bad"] = httpx.post(
            f"{server.url}/v1/chat/completions", json={"model": "bad", "messages": ASK}, timeout=120
        )

    thread = threading.Thread(target=ask_bad)
    thread.start()
    answer = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "good", "messages": ASK, "max_tokens": 3})
    assert answer.status_code == 200
    if template == LOOPS:
        assert thread.is_alive()  # the other model answered while this template was still rendering
    thread.join()
    assert result["bad"].status_code == 400, result["bad"].text
    assert message in result["bad"].json()["message"]


def test_stop_strings_are_bounded(serve):
    from fastapi.testclient import TestClient

    client = TestClient(create_app([serve()]), base_url="http://127.0.0.1")
    body = {"model": "tiny", "messages": ASK, "max_tokens": 2}
    for stop, fragment in [(["x" * 40_000] * 2, "at most 1000 characters"), (["a"] * 17, "at most 16 items")]:
        refused = client.post("/v1/chat/completions", json={**body, "stop": stop})
        assert refused.status_code == 422 and fragment in refused.json()["message"], refused.text
    assert client.post("/v1/chat/completions", json={**body, "stop": ["y" * 1000] * 16}).status_code == 200


class EngineCrash(BaseException):
    """Not an Exception: what the engine thread's own error handling does not catch."""


def test_a_dead_engine_fails_requests_with_503_and_health_says_so(serve, live):
    """Finding 10: with its engine thread dead, /health said ok and requests hung."""
    doomed, other = serve("doomed"), serve("other")
    slow(doomed)
    server = live(create_app([doomed, other]))
    assert httpx.get(f"{server.url}/health").status_code == 200
    body = {"model": "doomed", "messages": ASK, "max_tokens": 200, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as stream:
        lines = stream.iter_lines()
        next(lines)  # streaming has begun

        def crash():
            raise EngineCrash("a bug nobody caught")

        doomed.engine.engine.step = crash
        rest = [line for line in lines if line]
    assert '"type": "service_unavailable"' in rest[-2] and rest[-1] == "data: [DONE]"  # ended, not hung
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 503 and list(health.json()["unavailable"]) == ["doomed"]
    refused = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "stream": False})
    assert refused.status_code == 503 and "model unavailable" in refused.json()["message"]
    alive = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "other", "messages": ASK, "max_tokens": 2})
    assert alive.status_code == 200


def test_the_waiting_limit_holds_when_requests_arrive_together(serve, live):
    """Finding 11: the limit was checked before an await and acted on after it (6 waited, limit 2)."""
    served = serve()
    gate = threading.Event()
    step = served.engine.engine.step
    served.engine.engine.step = lambda: gate.wait(60) and step()  # nothing leaves the queue until the gate opens
    server = live(create_app([served], limits=Limits(max_waiting=2)))
    body = {"model": "tiny", "messages": ASK, "max_tokens": 2, "stream": True}

    async def rush():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def one():
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    return response.status_code

            return await asyncio.gather(*(one() for _ in range(6)))

    try:
        codes = asyncio.run(rush())  # the accepted streams start (their first chunk needs no step), then close
    finally:
        gate.set()
    assert sorted(codes) == [200, 200, 429, 429, 429, 429]


def test_api_keys_from_an_admin_protect_a_single_user_server(serve, tmp_path):
    """Keys made with `autan key add` lock a server started without --api-key."""
    from fastapi.testclient import TestClient

    from autan.store.db import Store

    store = Store(f"sqlite:///{tmp_path / 'keys.db'}")
    _, key = store.accounts.create_key("laptop")
    client = TestClient(create_app([serve()], policy=Policy(), store=store), base_url="http://127.0.0.1")
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_a_schema_the_grammar_cannot_follow_is_a_clear_400(serve):
    """Finding 9: a pathological pattern gave a 500 at the first token."""
    from fastapi.testclient import TestClient

    client = TestClient(create_app([serve()]), base_url="http://127.0.0.1")

    def constrained(schema):
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        body = {"model": "tiny", "messages": ASK, "max_tokens": 12, "response_format": fmt, "temperature": 0}
        return client.post("/v1/chat/completions", json=body)

    for schema, fragment in [
        ({"type": "string", "pattern": "^(a{1000}){1000}$"}, "the output could not follow the JSON schema"),
        ({"type": "nonsense"}, "JSON schema"),
    ]:
        answer = constrained(schema)
        assert answer.status_code == 400 and fragment in answer.json()["message"], answer.text
    assert constrained({"type": "object"}).status_code == 200


def test_a_json_grammar_is_compiled_once_per_request_off_the_event_loop(serve, monkeypatch):
    import llguidance
    from fastapi.testclient import TestClient

    compiled = []
    original = llguidance.LLMatcher.grammar_from_json_schema

    def spy(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            compiled.append("on the loop")
        except RuntimeError:
            compiled.append("in a worker thread")
        return original(*args, **kwargs)

    monkeypatch.setattr(llguidance.LLMatcher, "grammar_from_json_schema", staticmethod(spy))
    client = TestClient(create_app([serve()]), base_url="http://127.0.0.1")
    body = {"model": "tiny", "messages": ASK, "max_tokens": 8, "n": 3, "response_format": {"type": "json_object"}}
    answer = client.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200 and len(answer.json()["choices"]) == 3
    assert compiled == ["in a worker thread"]  # once for three choices, never on the loop
