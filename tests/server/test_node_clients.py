"""The Node clients: the `openai` npm package and the Vercel AI SDK (`ai` with its
OpenAI-compatible provider), run by tests/node/clients.mjs against a live server: tools on
Qwen2.5-Coder, streamed text equal to the whole answer, embeddings equal to sentence-transformers'."""

import json
import subprocess
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from autan.guard.encoder import pull
from autan.server.app import create_app
from autan.server.served import load_served
from conftest import Live

NODE = Path(__file__).parent.parent / "node"


def test_the_openai_package_and_the_ai_sdk():
    assert (NODE / "node_modules" / "ai").is_dir(), "run scripts/setup.sh --test: it installs tests/node's packages"
    live = Live(create_app([load_served("smollm2"), load_served("qwen2.5-coder-0.5b")]))
    try:
        run = subprocess.run(["node", str(NODE / "clients.mjs"), live.url, "smollm2", "qwen2.5-coder-0.5b"],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    finally:
        live.close()
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["openai_tool_calls"] == [["get_weather", {"city": "Paris"}]]
    assert out["ai_tool_calls"] == [["get_weather", {"city": "Paris"}]]
    assert out["openai_streamed"] == out["openai_whole"] == out["ai_streamed"] and "Paris" in out["openai_whole"]
    expected = SentenceTransformer(str(pull()), device="cpu").encode(["hello world", "a cat"])
    np.testing.assert_allclose(out["openai_embeddings"], expected, atol=1e-5)
    np.testing.assert_allclose(out["ai_embeddings"], expected, atol=1e-5)
    np.testing.assert_allclose(out["ai_embedding"], expected[0], atol=1e-5)
