"""The process that renders one chat template: run by `template.py` as a script, on its own.

It imports nothing of autan (so it starts in a few tens of milliseconds), limits its own
address space, and answers one JSON line per JSON line it reads:

    first line  {"source": ..., "max_chars": N}
    then        {"variables": {...}}  ->  {"text": ...} or {"error": ...}

until its input closes. A template that never ends is killed by its parent; one that grows
past its memory gets a MemoryError here; one that writes more than `max_chars` is stopped.
"""

import json
import os
import resource
import sys
import threading
import time
from datetime import datetime

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MEMORY_BYTES = 1 << 30
PARENT_CHECK_SECONDS = 0.5


class RefusedByTemplate(Exception):
    pass


def _raise(message):
    raise RefusedByTemplate(message)


class Environment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with `*` on strings and lists kept under the output limit."""

    intercepted_binops = frozenset({"*"})
    max_chars = 0

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                repeats = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if repeats and len(sequence) * times > self.max_chars:
                    raise RefusedByTemplate(f"it repeats a value to more than {self.max_chars} items")
        return super().call_binop(context, operator, left, right)


def environment(max_chars):
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    env.max_chars = max_chars
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, indent=indent, ensure_ascii=False)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def render(template, variables, max_chars):
    parts, size = [], 0
    for piece in template.generate(**variables):
        size += len(piece)
        if size > max_chars:
            raise RefusedByTemplate(f"it wrote more than {max_chars} characters")
        parts.append(piece)
    return "".join(parts)


def answer(template, line, max_chars):
    try:
        return {"text": render(template, json.loads(line)["variables"], max_chars)}
    except RefusedByTemplate as e:
        return {"error": f"the chat template refused the conversation: {e}"}
    except TemplateError as e:
        return {"error": f"the chat template failed: {e}"}
    except MemoryError:
        return {"error": f"the chat template needed more than {MEMORY_BYTES >> 20} MiB"}
    except RecursionError:
        return {"error": "the chat template recursed too deeply"}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, ZeroDivisionError) as e:
        return {"error": f"the chat template failed: {type(e).__name__}: {e}"}


def die_with_parent(parent):
    """A render that never ends must not outlive the server that asked for it. A thread looks
    for the parent twice a second and ends this process when it is gone (the kernel's
    PR_SET_PDEATHSIG is no use here: it fires when the parent *thread* that started us exits,
    and servers start workers from pool threads that come and go)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main():
    die_with_parent(int(sys.argv[1]))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    setup = json.loads(sys.stdin.readline())
    template = environment(setup["max_chars"]).from_string(setup["source"])
    for line in sys.stdin:
        sys.stdout.write(json.dumps(answer(template, line, setup["max_chars"])) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
