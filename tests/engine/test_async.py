"""The engine under asyncio: streams interleave, the event loop never waits on a step, leaving aborts."""

import asyncio

import pytest

from autan.engine.async_engine import AsyncEngine
from autan.engine.engine import Engine, EngineConfig
from autan.engine.sampling import SamplingParams
from conftest import CharTokenizer, random_prompts


@pytest.fixture
def engine(models):
    engine = AsyncEngine(Engine(models["mixtral"], CharTokenizer(), EngineConfig(block_size=4)))
    yield engine
    engine.close()


class HandshakeModel:
    """The model, with every step waiting until the event loop has run a task of its own.

    If a step ever ran on the event loop (or held it), the loop could not answer, and the step
    would fail: so each successful step proves the loop served other work while it ran. No
    clock is read; the 120 s is only how long a broken engine is given before the test fails.
    """

    def __init__(self, model):
        self.model = model
        self.config, self.device, self.dtype = model.config, model.device, model.dtype
        self.cache_config, self.shard = model.cache_config, model.shard
        self.loop: asyncio.AbstractEventLoop | None = None
        self.handshakes = 0

    def run(self, *args):
        async def answer():
            return "served"

        assert asyncio.run_coroutine_threadsafe(answer(), self.loop).result(timeout=120) == "served"
        self.handshakes += 1
        return self.model.run(*args)


def test_concurrent_streams_and_a_free_event_loop(models):
    model = HandshakeModel(models["mixtral"])
    engine = AsyncEngine(Engine(model, CharTokenizer(), EngineConfig(block_size=4)))
    prompts = random_prompts(30, (12, 40, 7))
    params = SamplingParams(temperature=0, max_tokens=12)

    async def main():
        model.loop = asyncio.get_running_loop()

        async def consume(stream):
            return [d.token_ids[0] async for d in stream], stream.completion

        streams = [await engine.add_request(p, params) for p in prompts]
        return await asyncio.gather(*(consume(s) for s in streams))

    results = asyncio.run(main())
    engine.close()
    assert model.handshakes >= 12  # every step ran while the loop was free to answer
    sync = Engine(models["mixtral"], CharTokenizer(), EngineConfig(block_size=4))
    expected = [sync.add_request(p, params) for p in prompts]
    sync.run_until_idle()
    for (tokens, done), stream in zip(results, expected, strict=True):
        assert tokens == done.token_ids == stream.events[-1].token_ids


def test_leaving_a_stream_early_aborts_the_request(engine):
    async def main():
        stream = await engine.add_request(random_prompts(31, [20])[0], SamplingParams(temperature=0, max_tokens=400))
        async for _ in stream:
            break  # the client went away
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not engine.engine.has_work:
                break

    asyncio.run(main())
    assert not engine.engine.has_work and engine.engine.pool.n_used == 0


def test_bad_input_raises_before_streaming(engine):
    async def main():
        await engine.add_request([1] * 10_000)

    with pytest.raises(Exception, match="prompt has 10000 tokens"):
        asyncio.run(main())
