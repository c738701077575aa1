"""Chat templates render in a worker process with limits; a runaway render ends in a clear
error, and a worker never outlives the process that asked it to render."""

import os
import subprocess
import sys
import threading
import time

import pytest

from autan.tokenizer.template import ChatTemplate, ChatTemplateError, TemplateLimits

HI = [{"role": "user", "content": "hi"}]
LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


def test_a_runaway_render_is_stopped_and_the_next_one_works():
    template = ChatTemplate(LOOPS + "{{ messages[0]['content'] }}", limits=TemplateLimits(seconds=1))
    with pytest.raises(ChatTemplateError, match="took more than 1 s"):
        template.render(HI)
    quick = ChatTemplate("{{ messages[0]['content'] }}!")
    assert quick.render(HI) == "hi!" and quick.render([{"role": "user", "content": "\ud800"}]) == "\ud800!"


@pytest.mark.parametrize(
    "source, message",
    [
        ("{{ 'ab' * 20000000 }}", "repeats a value to more than"),
        ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "MiB"),
        ("{% for i in range(99999) %}{{ 'x' * 1000 }}{% endfor %}", "wrote more than"),
        ("{{ ().__class__.__mro__ }}", "unsafe"),
    ],
)
def test_memory_and_output_are_bounded(source, message):
    with pytest.raises(ChatTemplateError, match=message):
        ChatTemplate(source, limits=TemplateLimits(seconds=30, max_chars=2**24)).render(HI)


def test_a_worker_dies_with_the_process_that_started_it():
    parent = (
        "import os, threading\n"
        "from autan.tokenizer.template import ChatTemplate, TemplateLimits\n"
        f"t = ChatTemplate({LOOPS!r}, limits=TemplateLimits(seconds=600))\n"
        "print(t._start().pid, flush=True)\n"
        "threading.Timer(2.0, lambda: os._exit(0)).start()\n"
        "t.render([{'role': 'user', 'content': 'x'}])\n"
    )
    child = subprocess.run([sys.executable, "-c", parent], timeout=120, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    worker = int(child.stdout.split()[0])
    deadline = time.monotonic() + 60  # the worker looks twice a second; a loaded machine gets slack
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"the template worker {worker} outlived its parent")


def test_a_worker_outlives_the_thread_that_started_it():
    """Servers render from pool threads that retire; the worker they started must live on (the
    kernel's parent-death signal fires on the starting thread's exit and killed it)."""
    template = ChatTemplate("{{ messages[0]['content'] }}.")
    starter = threading.Thread(target=template.render, args=(HI,))
    starter.start()
    starter.join()
    worker = template._worker
    time.sleep(1.0)  # long enough for a signal to land; the assertion does not depend on speed
    assert worker is not None and worker.poll() is None, f"the worker ended with {worker.returncode}"
    assert template.render(HI) == "hi." and template._worker is worker
