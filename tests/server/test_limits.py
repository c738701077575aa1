"""Limits answered in the API's terms: a full queue is a 429 with Retry-After, not a hang."""

from fastapi.testclient import TestClient

from autan.engine.engine import EngineConfig
from autan.server.app import Limits, create_app
from autan.server.served import load_served


def test_a_full_queue_answers_429_with_retry_after(tmp_path):
    from checkpoints import tiny_mistral_format

    path = tiny_mistral_format(tmp_path, "mistral", "mistral_instruct_tokenizer_240323.model.v3", 32768)
    served = load_served(f"tiny={path}", EngineConfig(max_running=1))
    app = create_app([served], limits=Limits(max_waiting=0))  # every request finds the queue full
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code == 429
            assert response.headers["retry-after"] == "1"
            assert response.json()["type"] == "rate_limit_error" and "limit 0" in response.json()["message"]
        roomy = create_app([served], limits=Limits(max_waiting=8))
        with TestClient(roomy, base_url="http://127.0.0.1") as client:
            assert client.post("/v1/chat/completions", json=body).status_code == 200
    finally:
        served.engine.close()
