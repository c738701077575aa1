"""Screenshots of the chat app for docs/screenshots: light and dark, desktop and phone width, a
conversation and the welcome of an empty chat.

    .venv/bin/python scripts/screenshots.py      (needs `make setup-test` for Chromium)

Starts `autan serve` with the default model and a scratch database, imports one conversation
that shows what answers can hold (code, a table, math), and photographs it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
ANSWER = """Here is a binary search in Python:

```python
def search(items: list[int], target: int) -> int:
    low, high = 0, len(items) - 1
    while low <= high:
        middle = (low + high) // 2
        if items[middle] == target:
            return middle
        low, high = (middle + 1, high) if items[middle] < target else (low, middle - 1)
    return -1
```

| input size | steps, at most |
|---|---|
| 1,000 | 10 |
| 1,000,000 | 20 |

It takes $\\lceil \\log_2 (n + 1) \\rceil$ comparisons in the worst case."""


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = Path(tempfile.mkdtemp()) / "chats.db"
    server = subprocess.Popen(
        [sys.executable, "-m", "autan.cli", "serve", "--port", str(port), "--db", f"sqlite:///{db}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        for title in ("Trip to Lyon", "French cheeses", "Rust lifetimes"):
            httpx.post(f"{url}/api/conversations", json={"title": title, "model": "smollm2"})
        document = {
            "format": "autan-conversation",
            "title": "Binary search",
            "model": "smollm2",
            "messages": [
                {"id": "q", "parent_id": None, "role": "user", "content": "How do I search a sorted list fast?"},
                {
                    "id": "a",
                    "parent_id": "q",
                    "role": "assistant",
                    "content": ANSWER,
                    "model": "smollm2",
                    "stats": {
                        "tokens": 168,
                        "tokens_per_second": 4.1,
                        "first_token_seconds": 0.31,
                        "finish_reason": "stop",
                    },
                },
            ],
        }
        conversation = httpx.post(f"{url}/api/conversations/import", json=document).json()["id"]
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            for scheme in ("light", "dark"):
                for name, size in (("desktop", (1280, 800)), ("phone", (390, 844))):
                    context = browser.new_context(
                        viewport={"width": size[0], "height": size[1]}, color_scheme=scheme, device_scale_factor=1
                    )
                    page = context.new_page()
                    page.goto(f"{url}/#{conversation}")
                    page.wait_for_selector("article.assistant .markdown pre")
                    page.screenshot(path=OUT / f"chat-{scheme}-{name}.png")
                    page.goto(url)
                    page.wait_for_selector(".welcome .model-line strong")
                    page.screenshot(path=OUT / f"welcome-{scheme}-{name}.png")
                    context.close()
            browser.close()
        print(f"screenshots in {OUT}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
