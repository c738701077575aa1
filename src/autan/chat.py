"""`autan chat`: an interactive conversation in the terminal.

Input is read a line at a time. A line that starts with `\"\"\"` opens a multi-line message that
the next line ending in `\"\"\"` closes; a line ending in a backslash continues on the next line.
Lines starting with `/` are commands (`/help` lists them). Ctrl-C stops the answer being written
(what was shown stays in the conversation) or drops the line being typed; Ctrl-D or `/exit` leaves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from autan.engine.engine import Engine
from autan.engine.sampling import SamplingParams
from autan.errors import AutanError
from autan.tokenizer import Message, Tokenizer

HELP = """\
  /system TEXT   set the system prompt (/system alone shows it, /system clear removes it)
  /reset         forget the conversation (the system prompt stays)
  /history       show the conversation so far
  /exit          leave (also /quit, /bye, Ctrl-D)
  \"\"\"            start or end a multi-line message; a line ending in \\ continues too
  Ctrl-C         stop the answer being written, or drop the line being typed"""

FENCE = '"""'
MIN_ANSWER_TOKENS = 64  # room kept for the answer when old turns must be dropped to fit


@dataclass
class Conversation:
    system: str | None = None
    turns: list[Message] = field(default_factory=list)

    def messages(self) -> list[Message]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns

    def fit(self, tokenizer: Tokenizer, context: int) -> tuple[list[int], int]:
        """The prompt ids, after dropping the oldest exchanges until the prompt leaves room to answer.

        Returns the ids and how many messages were dropped. The newest user message is never
        dropped: if it alone does not fit, AutanError says so.
        """
        dropped = 0
        while True:
            ids = tokenizer.encode_chat(self.messages())
            if len(ids) + MIN_ANSWER_TOKENS <= context or len(self.turns) <= 1:
                break
            cut = 2 if len(self.turns) > 2 else 1  # a user message and the answer to it
            del self.turns[:cut]
            dropped += cut
        if len(ids) >= context:
            raise AutanError(f"this message makes a prompt of {len(ids)} tokens; the model's context is {context}")
        return ids, dropped


def chat(
    engine: Engine,
    params: SamplingParams,
    system: str | None = None,
    *,
    read: Callable[[str], str] = input,
    out: TextIO = sys.stdout,
    info: TextIO = sys.stderr,
) -> None:
    conversation = Conversation(system)
    while True:
        try:
            text = _read_message(read)
        except KeyboardInterrupt:
            print("^C  (Ctrl-D or /exit to leave)", file=info)
            continue
        except EOFError:
            print(file=info)
            return
        if not text.strip():
            continue
        if text.startswith("/") and not text.startswith(FENCE):
            if _command(text, conversation, info) == "exit":
                return
            continue
        conversation.turns.append({"role": "user", "content": text})
        shown: list[str] = []
        try:
            prompt, dropped = conversation.fit(engine.tokenizer, engine.max_seq_len)
            if dropped:
                print(f"(the {dropped} oldest messages no longer fit the context and were left out)", file=info)
            _answer(engine, params, prompt, shown, out, info)
        except AutanError as e:
            conversation.turns.pop()
            print(f"autan: {e}. The message was not sent.", file=info)
            continue
        except KeyboardInterrupt:
            print("\n[stopped]", file=info)
            if not shown:  # nothing was answered yet: the question is not kept (Up arrow brings it back)
                conversation.turns.pop()
                continue
        conversation.turns.append({"role": "assistant", "content": "".join(shown)})


def _read_message(read: Callable[[str], str]) -> str:
    line = read(">>> ")
    if line.lstrip().startswith(FENCE):
        first = line.lstrip()[len(FENCE) :]
        if first.strip() and first.rstrip().endswith(FENCE):  # """all on one line"""
            return first.rstrip().removesuffix(FENCE)
        lines = [first]
        while not (line := read("... ")).rstrip().endswith(FENCE):
            lines.append(line)
        lines.append(line.rstrip().removesuffix(FENCE))
        return "\n".join(lines).strip("\n")
    lines = [line]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        lines.append(read("... "))
    return "\n".join(lines)


def _command(text: str, conversation: Conversation, info: TextIO) -> str | None:
    name, _, arg = text.partition(" ")
    arg = arg.strip()
    if name in ("/exit", "/quit", "/bye"):
        return "exit"
    if name in ("/help", "/?"):
        print(HELP, file=info)
    elif name == "/reset":
        conversation.turns.clear()
        kept = " (the system prompt stays: /system to see it)" if conversation.system else ""
        print(f"conversation cleared{kept}", file=info)
    elif name == "/system" and not arg:
        print(f"system prompt: {conversation.system}" if conversation.system else "no system prompt", file=info)
    elif name == "/system" and arg == "clear":
        conversation.system = None
        print("system prompt removed", file=info)
    elif name == "/system":
        conversation.system = arg
        print("system prompt set", file=info)
    elif name == "/history":
        messages = conversation.messages()
        for m in messages:
            print(f"[{m['role']}] {m['content']}", file=info)
        if not messages:
            print("(empty)", file=info)
    else:
        print(f"unknown command {name}: /help lists the commands", file=info)
    return None


def _answer(
    engine: Engine, params: SamplingParams, prompt: list[int], shown: list[str], out: TextIO, info: TextIO
) -> None:
    """Stream the answer to `out`, collecting it in `shown` (which keeps what was shown if interrupted).

    Earlier turns stay in the engine's prefix cache, so each turn computes only its new tokens.
    """
    stream = engine.add_request(prompt, params)
    try:
        for delta in stream:
            shown.append(delta.text)
            out.write(delta.text)
            out.flush()
    except KeyboardInterrupt:
        stream.abort()
        engine.run_until_idle()  # frees the request's blocks
        raise
    done = stream.completion
    assert done is not None
    note = {"length": f", max_tokens={params.max_tokens} reached", "model_length": ", context full"}
    cached = f", {done.usage.cached_tokens} of {done.usage.prompt_tokens} prompt tokens cached"
    print(
        f"\n[{done.usage.completion_tokens} tokens, {done.tokens_per_second:.1f} tok/s, "
        f"first token {done.prefill_seconds:.2f} s{cached if done.usage.cached_tokens else ''}"
        f"{note.get(done.finish_reason, '')}]",
        file=info,
    )
