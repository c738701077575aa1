"""`autan chat` in a real pseudo-terminal, typed into as a user would, on the default model."""

import os
import sys

import pexpect
import pytest

from autan import registry
from processes import interruptible

pytestmark = pytest.mark.default_model

PROMPT = ">>> "


@pytest.fixture(scope="module", autouse=True)
def pulled():
    registry.pull("smollm2", quiet=True)


def spawn(max_tokens: int) -> pexpect.spawn:
    env = {**os.environ, "TERM": "dumb"}
    args = ["-m", "autan.cli", "chat", "smollm2", "--temperature", "0", "--max-tokens", str(max_tokens)]
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=120, dimensions=(50, 500),
                          preexec_fn=interruptible)  # fmt: skip
    child.expect_exact("/help for commands")
    child.expect_exact(PROMPT)
    return child


@pytest.fixture
def session():
    child = spawn(40)
    yield child
    child.close(force=True)


@pytest.fixture
def unlimited():
    """Answers without a token limit: the greedy story below runs past 1024 tokens, so Ctrl-C comes
    while it is still being written however fast the machine is."""
    child = spawn(0)
    yield child
    child.close(force=True)


def say(child, *lines):
    for line in lines:
        child.sendline(line)


def test_conversation_with_history_system_prompt_and_multi_line_input(session):
    say(session, "What is the capital of France?")
    session.expect_exact("tok/s")
    answer = session.before
    assert "Paris" in answer
    session.expect_exact(PROMPT)

    say(session, '"""', "Name one color.", "Only one.", '"""')
    session.expect_exact("tok/s")
    session.expect_exact(PROMPT)

    say(session, "/system Answer in one word.")
    session.expect_exact("system prompt set")
    say(session, "/history")
    session.expect_exact(PROMPT)
    session.expect_exact(PROMPT)
    history = session.before
    assert "[system] Answer in one word." in history
    assert "[user] What is the capital of France?" in history
    assert "[user] Name one color.\r\nOnly one." in history
    assert history.count("[assistant] ") == 2

    say(session, "/reset", "/history")
    session.expect_exact("conversation cleared")
    session.expect_exact("[system] Answer in one word.")
    session.expect_exact(PROMPT)

    say(session, "/exit")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(unlimited):
    session = unlimited
    say(session, "Write a long story about a dragon who learns to bake bread.")
    session.expect_exact("bake bread.\r\n")  # the terminal's echo of the line
    session.expect(r"\w+ \w+ \w+")  # the answer has started streaming
    session.sendintr()
    session.expect_exact("[stopped]")
    session.expect_exact(PROMPT)
    assert session.isalive()

    say(session, "What is the capital of France?")
    session.expect_exact("tok/s")
    assert "Paris" in session.before
    say(session, "/history")
    session.expect_exact("[user] What is the capital of France?")
    history = session.before
    assert "[user] Write a long story" in history and "[assistant] " in history  # the stopped answer is kept

    session.sendintr()  # at the prompt: drops the line, does not leave
    session.expect_exact("Ctrl-D or /exit to leave")
    session.sendeof()
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
