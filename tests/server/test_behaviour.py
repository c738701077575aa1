"""What the server does beyond the happy path: errors, keys, limits, many clients, disconnects."""

import asyncio

import httpx
from openai import AsyncOpenAI

from conftest import API_KEY, LOGS, metric, wait_until_idle

AUTH = {"Authorization": f"Bearer {API_KEY}"}
ASK = [{"role": "user", "content": "hello"}]


def post(url, path, body, headers=AUTH, **kw):
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=120, **kw)


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["object"] == "error" and set(body) == {"object", "message", "type", "param", "code"}
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


def test_errors_use_mistrals_envelope_and_status(server):
    assert_error(post(server, "/v1/chat/completions", {"model": "nope", "messages": ASK}), 404, "'nope'", "smollm2")
    body = assert_error(
        post(server, "/v1/chat/completions", {"model": "tiny-mistral", "messages": ASK, "max_tokens": 600}),
        400,
        "max_tokens is 600",
        "exceeds the model's context of 512",
    )
    assert body["param"] == "max_tokens"
    long = [{"role": "user", "content": "word " * 700}]
    assert_error(post(server, "/v1/chat/completions", {"model": "tiny-mistral", "messages": long}), 400, "512")
    bad = {"model": "tiny-mistral", "messages": ASK, "temperature": "hot", "top_p": 3}
    body = assert_error(post(server, "/v1/chat/completions", bad), 422, "temperature", "top_p")
    assert body["param"] == "temperature"
    raw = httpx.post(f"{server}/v1/chat/completions", content=b"{not json", headers=AUTH)
    assert_error(raw, 400, "not valid JSON")
    fim = {"model": "smollm2", "prompt": "def f(", "suffix": "pass"}
    assert_error(post(server, "/v1/fim/completions", fim), 400, "does not support fill-in-the-middle")
    order = {"model": "tiny-mistral", "messages": [{"role": "assistant", "content": "hi"}]}
    assert_error(post(server, "/v1/chat/completions", order), 400, "cannot be encoded")
    prefix = {"model": "smollm2", "messages": [{"role": "assistant", "content": "x", "prefix": True}, *ASK]}
    assert_error(post(server, "/v1/chat/completions", prefix), 422, "prefix")


def test_api_keys_are_required(server):
    body = {"model": "tiny-mistral", "messages": ASK, "max_tokens": 1}
    assert_error(post(server, "/v1/chat/completions", body, headers={}), 401, "no API key")
    assert_error(post(server, "/v1/chat/completions", body, headers={"Authorization": "Bearer wrong"}), 401)
    assert post(server, "/v1/chat/completions", body).status_code == 200
    assert httpx.get(f"{server}/health").json()["status"] == "ok"  # health needs no key


def test_unknown_openai_fields_are_accepted(server):
    body = {"model": "tiny-mistral", "messages": ASK, "max_tokens": 2, "user": "u1", "store": False, "metadata": {}}
    assert post(server, "/v1/chat/completions", body).status_code == 200


def test_32_concurrent_streams_are_independent(server):
    async def one(client, i):
        stream = await client.chat.completions.create(
            model="tiny-mistral",
            messages=[{"role": "user", "content": f"request number {i}"}],
            temperature=1.0,
            seed=i,
            max_tokens=24,
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def run(indices):
        async with AsyncOpenAI(api_key=API_KEY, base_url=f"{server}/v1") as client:
            return await asyncio.gather(*(one(client, i) for i in indices))

    together = asyncio.run(run(range(32)))
    alone = [asyncio.run(run([i]))[0] for i in (0, 13, 31)]
    assert [together[i] for i in (0, 13, 31)] == alone
    assert len(set(together)) == 32


def test_a_client_that_leaves_mid_stream_frees_its_blocks(server):
    aborted = metric(server, "autan_requests_finished_total", "tiny-mixtral", reason="abort")
    body = {"model": "tiny-mixtral", "messages": ASK, "max_tokens": 400, "stream": True, "temperature": 1}
    body["ignore_eos"] = True
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, headers=AUTH, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
        assert metric(server, "autan_kv_blocks_used", "tiny-mixtral") > 0
    # the connection is closed: the request is aborted, not run to its 400 tokens
    wait_until_idle(server, "tiny-mixtral")
    assert metric(server, "autan_requests_finished_total", "tiny-mixtral", reason="abort") == aborted + 1
    assert metric(server, "autan_kv_blocks_used", "tiny-mixtral") == 0


def test_metrics_and_openapi(server):
    post(server, "/v1/chat/completions", {"model": "tiny-mistral", "messages": ASK, "max_tokens": 3})
    assert httpx.get(f"{server}/metrics").status_code == 401  # the operator's numbers need the key
    text = httpx.get(f"{server}/metrics", headers=AUTH).text
    for name in (
        "autan_requests_total",
        "autan_generation_tokens_total",
        "autan_time_to_first_token_seconds_bucket",
        "autan_kv_blocks_free",
        "autan_prefix_cache_hit_rate",
        "autan_requests_waiting",
    ):
        assert name in text, name
    spec = httpx.get(f"{server}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/fim/completions", "/v1/completions", "/v1/models"} <= set(spec["paths"])


def test_request_logs_hold_no_prompt_text(server):
    secret = "my-secret-diary-entry"
    done = post(
        server, "/v1/chat/completions", {"model": "tiny-mistral", "messages": [{"role": "user", "content": secret}]}
    )
    log = LOGS["server"].read_text()
    assert done.json()["id"] in log  # the request was logged...
    assert secret not in log  # ...without what the user wrote


def test_ignore_eos_and_min_tokens_hold_the_end_of_sequence_back(server):
    """A question the model answers in a few words: it stops early, unless told to go on."""
    ask = {"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    ask |= {"temperature": 0, "max_tokens": 40}
    free = post(server, "/v1/chat/completions", ask).json()
    assert free["choices"][0]["finish_reason"] == "stop" and free["usage"]["completion_tokens"] < 40
    for extra in ({"ignore_eos": True}, {"min_tokens": 40}):
        held = post(server, "/v1/chat/completions", ask | extra).json()
        assert held["usage"]["completion_tokens"] == 40 and held["choices"][0]["finish_reason"] == "length", extra


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(server):
    """Review finding: a client naming a new address in X-Forwarded-For got a fresh throttle each time."""
    codes = [
        httpx.post(f"{server}/api/session", json={"api_key": "wrong"}, headers={"X-Forwarded-For": f"10.0.0.{i}"})
        for i in range(8)
    ]
    assert [c.status_code for c in codes[:5]] == [401] * 5 and codes[-1].status_code == 429
