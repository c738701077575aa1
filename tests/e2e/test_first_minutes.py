"""What a new user meets first: `make run` answers its question right, every time; answers end;
Ctrl-C ends quietly; the commands that need no model start without loading torch; a busy port
is reported before anything else happens."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autan import cli, registry
from processes import interruptible, wait_healthy

pytestmark = pytest.mark.default_model
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module", autouse=True)
def pulled():
    registry.pull("smollm2", quiet=True)


def make_run_args() -> list[str]:
    """The arguments `make run` gives `autan`, read from the Makefile itself."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.M)[1]
    prompt = re.search(r"^PROMPT \?= (.+)$", makefile, re.M)[1]
    words = recipe.replace('"$(PROMPT)"', "\0").split()
    assert words[0] == ".venv/bin/autan", recipe
    return [prompt if w == "\0" else w for w in words[1:]]


def test_make_run_answers_paris_for_every_seed(capsys):
    args = make_run_args()
    assert args[:2] == ["run", "smollm2"] and "What is the capital of France?" in args
    for seed in range(1, 11):
        assert cli.main([*args, "--seed", str(seed), "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert "Paris" in answer["text"], (seed, answer["text"])


def test_no_answer_runs_past_the_default_limit(capsys):
    """Sampled hot, the small model rambles: the answer still ends, at the default limit at most."""
    ask = ["run", "Write a very long story about the sea.", "--temperature", "1.5", "--seed", "3", "--json"]
    assert cli.main(ask) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["usage"]["completion_tokens"] <= cli.MAX_TOKENS
    assert answer["finish_reason"] in ("stop", "length")


def test_the_models_recommended_sampling_is_the_default():
    args = cli._parser(["run"]).parse_args(["run", "hi"])
    params = cli._params(args)
    recommended = registry.KNOWN_MODELS["smollm2"].sampling
    assert (params.temperature, params.top_p) == (recommended["temperature"], recommended["top_p"])
    assert params.max_tokens == cli.MAX_TOKENS and params.repetition_penalty == cli.REPETITION_PENALTY
    given = cli._params(cli._parser(["run"]).parse_args(["run", "hi", "--temperature", "1", "--max-tokens", "0"]))
    assert given.temperature == 1 and given.max_tokens is None


def test_ctrl_c_ends_run_quietly():
    process = subprocess.Popen(
        [sys.executable, "-m", "autan.cli", "run", "Tell me a long story.", "--max-tokens", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    assert process.stdout.read(1)  # the answer has begun
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err, err


@pytest.mark.parametrize("command", [["--help"], ["list"], ["--version"], ["run", "hi", "--top-p", "9"]])
def test_commands_that_need_no_model_import_no_torch(command):
    script = (
        "import sys\nfrom autan import cli\n"
        f"try:\n    cli.main({command!r})\nexcept SystemExit:\n    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "no torch", result.stdout + result.stderr
    if command == ["--version"]:
        assert result.stdout.startswith("autan 0.")


def test_serve_on_a_busy_port_fails_before_its_banner(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "autan.cli", "serve", "--port", str(port), "--db", f"sqlite:///{tmp_path}/c.db"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "serving" not in result.stderr and "chat app on" not in result.stderr


def test_sigterm_stops_a_server_whose_template_never_ends(tmp_path):
    """Finding 8: with a never-ending template rendering, SIGTERM did not stop the server."""
    import httpx

    from checkpoints import tiny_with_template

    loops = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    path = tiny_with_template(tmp_path, "loops", loops)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autan.cli",
            "serve",
            f"loops={path}",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{tmp_path}/c.db",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AUTAN_API_KEYS": ""},
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, server)
    body = {"model": "loops", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=1)  # left rendering
    server.send_signal(signal.SIGTERM)
    # uvicorn shuts down, then re-raises the signal: ended by it, or cleanly
    assert server.wait(timeout=120) in (0, -signal.SIGTERM)
