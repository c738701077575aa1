"""A long prompt stalls nobody, counted in engine steps (not seconds): a short request that
arrives while a 6,000-token prompt is being read has its first token within two steps, a stream
already running gets a token in every step, and the long prompt alone still takes the whole
budget each step."""

import autan
from autan.engine.engine import Engine, EngineConfig
from autan.engine.output import Completion, Delta
from autan.engine.sampling import SamplingParams
from checkpoints import hf_model
from conftest import CharTokenizer, random_prompts


def test_a_long_prompt_stalls_neither_arrivals_nor_streams(tmp_path):
    hf_model("llama", seed=2, max_position_embeddings=8192).save_pretrained(tmp_path)
    engine = Engine(autan.load_model(tmp_path), CharTokenizer(), EngineConfig(max_batched_tokens=256, max_running=8))
    got: dict[str, list[int]] = {"stream": [], "long": [], "chat": []}  # the step of each token, per request

    def tap(name):
        def emit(event):
            if isinstance(event, Delta) and event.token_ids:
                got[name] += [steps[0]] * len(event.token_ids)
            assert not isinstance(event, BaseException), event

        return emit

    steps = [0]

    def step():
        steps[0] += 1
        engine.step()

    short, long_prompt, chat = random_prompts(3, [12, 6000, 40])
    engine.add_request(short, SamplingParams(temperature=0, max_tokens=300), emit=tap("stream"))
    while not got["stream"]:
        step()
    engine.add_request(long_prompt, SamplingParams(temperature=0, max_tokens=1), emit=tap("long"))
    for _ in range(3):  # the long prompt is being read
        step()
    arrival = steps[0]
    engine.add_request(chat, SamplingParams(temperature=0, max_tokens=5), emit=tap("chat"))
    while not got["long"]:
        step()
        assert steps[0] < 200, "the long prompt never finished"
    assert got["chat"] and got["chat"][0] - arrival <= 2, (arrival, got["chat"][:3])
    first, last = got["stream"][0], got["long"][0]
    assert set(range(first, last + 1)) <= set(got["stream"]), "the stream missed a step while the prompt was read"
    assert last - arrival < 6000 // 256 + 3  # the long prompt kept most of the budget beside them


def test_a_long_prompt_alone_takes_the_whole_budget(tmp_path):
    hf_model("llama", seed=2, max_position_embeddings=8192).save_pretrained(tmp_path)
    engine = Engine(autan.load_model(tmp_path), CharTokenizer(), EngineConfig(max_batched_tokens=256))
    done: list[Completion] = []
    engine.add_request(random_prompts(4, [2048])[0], SamplingParams(max_tokens=1),
                       emit=lambda e: done.append(e) if isinstance(e, Completion) else None)  # fmt: skip
    steps = 0
    while not done:
        engine.step()
        steps += 1
    assert steps == 2048 // 256  # 8 full chunks, the last one sampling
