"""Write a benchmark's figures into docs/benchmarks.md, one section per script, with its command."""

from __future__ import annotations

import platform
import re
import sys
from datetime import date
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nFigures written by the scripts in `bench/`; each section says the command that made it.\n"


def machine() -> str:
    threads = torch.get_num_threads()
    return f"{platform.machine()}, {threads} threads, torch {torch.__version__}, Python {platform.python_version()}"


def cpu() -> str:
    """This CPU as the benchmarks' tables name it: its model and the native kernels' tier on it
    (figures from an AVX2-only EPYC and an AVX-512 Xeon are kept apart)."""
    from autan import native

    with open("/proc/cpuinfo") as info:
        name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    module = native.module()
    return f"{name or platform.processor()}, {module.isa() if module else 'no native kernels'}"


def write_section(name: str, body: str) -> None:
    command = "python " + " ".join(["bench/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    made = f"`{command}` on {date.today()}, {machine()}."
    section = f"<!-- {name} -->\n## {name}\n\n{made}\n\n{body.strip()}\n<!-- /{name} -->\n"
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(section)
