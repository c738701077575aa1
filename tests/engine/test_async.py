"""The engine under asyncio: streams interleave, the event loop never waits on a step, leaving aborts."""

import asyncio
import itertools
import time

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


class SlowModel:
    """The model, with every step taking at least 50 ms (sleeping, as a big model's kernels would)."""

    def __init__(self, model):
        self.model = model
        self.config, self.device, self.dtype = model.config, model.device, model.dtype

    def run(self, *args):
        time.sleep(0.05)
        return self.model.run(*args)


def test_concurrent_streams_and_a_free_event_loop(models):
    engine = AsyncEngine(Engine(SlowModel(models["mixtral"]), CharTokenizer(), EngineConfig(block_size=4)))
    prompts = random_prompts(30, (12, 40, 7))
    params = SamplingParams(temperature=0, max_tokens=12)

    async def main():
        ticks = []

        async def ticker():  # would starve if a step blocked the loop
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.002)

        async def consume(stream):
            return [d.token_ids[0] async for d in stream], stream.completion

        tick = asyncio.create_task(ticker())
        streams = [await engine.add_request(p, params) for p in prompts]
        results = await asyncio.gather(*(consume(s) for s in streams))
        tick.cancel()
        return results, ticks

    results, ticks = asyncio.run(main())
    engine.close()
    sync = Engine(models["mixtral"], CharTokenizer(), EngineConfig(block_size=4))
    expected = [sync.add_request(p, params) for p in prompts]
    sync.run_until_idle()
    for (tokens, done), stream in zip(results, expected, strict=True):
        assert tokens == done.token_ids == stream.events[-1].token_ids
    # 13 steps of 50 ms ran while the loop ticked every 2 ms; a step on the loop would leave 50 ms gaps
    gaps = sorted(b - a for a, b in itertools.pairwise(ticks))
    assert len(ticks) > 100 and gaps[-3] < 0.04, gaps[-5:]


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
