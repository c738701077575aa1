"""Many flaky clients at once: 32 streaming and 8 non-streaming, half of each leaving at a random
point. Afterwards the server has freed every KV block, runs and queues nothing, and still
answers a newcomer."""

import asyncio
import random

import httpx

from conftest import API_KEY, metric, wait_until_idle

MODEL = "tiny-mixtral"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def streaming(client, i, leave_after):
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"client {i}"}], "stream": True}
    body |= {"max_tokens": 200, "ignore_eos": True, "temperature": 1, "seed": i}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if leave_after is not None and seen >= leave_after:
                return "left"  # closing the response mid-stream: the client is gone
    return "done"


async def whole(client, i, leave_after):
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"client {i}"}], "max_tokens": 200}
    body |= {"ignore_eos": True, "seed": i}
    try:
        response = await client.post("/v1/chat/completions", json=body, timeout=leave_after or 600)
    except httpx.ReadTimeout:
        return "left"
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 200
    return "done"


def test_flaky_clients_leave_nothing_behind(server):
    rng = random.Random(12)
    aborted = metric(server, "autan_requests_finished_total", MODEL, reason="abort")

    async def main():
        async with httpx.AsyncClient(base_url=server, headers=AUTH, timeout=600) as client:
            jobs = [streaming(client, i, rng.randint(1, 60) if i % 2 else None) for i in range(32)]
            jobs += [whole(client, 100 + i, rng.uniform(0.05, 1.0) if i % 2 else None) for i in range(8)]
            return await asyncio.gather(*jobs)

    outcomes = asyncio.run(main())
    assert outcomes.count("done") >= 20  # the half that stayed got whole answers
    wait_until_idle(server, MODEL)
    assert metric(server, "autan_kv_blocks_used", MODEL) == 0
    assert metric(server, "autan_requests_running", MODEL) == metric(server, "autan_requests_waiting", MODEL) == 0
    left = outcomes.count("left")
    # each client that left before its answer ended was aborted (one that left right after the
    # last token may have found its answer already done)
    assert (
        aborted + left - 2 <= metric(server, "autan_requests_finished_total", MODEL, reason="abort") <= aborted + left
    )
    newcomer = httpx.post(
        f"{server}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "still there?"}], "max_tokens": 3},
        headers=AUTH,
        timeout=120,
    )
    assert newcomer.status_code == 200
