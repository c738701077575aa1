"""The app where it used to lose work or mislead (findings 16, 17): a failed send keeps the text,
what is stored is the final answer, errors stay beside the answer, a live answer is never shown
as interrupted, early settings are kept, a stopped answer has its count, the phone sidebar
closes; and a server with a key asks for it once."""

import re
import socket
import sys

import httpx
import pytest
from playwright.sync_api import expect
from test_chat_app import last_answer, send, send_long, wait_done

from conftest import Server

pytestmark = pytest.mark.default_model


def stored(server, page):
    conversation = page.evaluate("location.hash").lstrip("#")
    return httpx.get(f"{server.url}/api/conversations/{conversation}").json()


def test_a_failed_send_keeps_what_was_typed(page):
    page.route("**/api/conversations/*/messages", lambda route: route.fulfill(status=503, body="{}"))
    page.route("**/api/conversations", lambda route: route.continue_())
    send(page, "a carefully written question")
    expect(page.locator("#notice")).to_contain_text("Not sent")
    expect(page.locator("#input")).to_have_value("a carefully written question")
    page.unroute("**/api/conversations/*/messages")
    page.press("#input", "Enter")
    wait_done(page)
    expect(page.locator("#input")).to_have_value("")
    expect(page.locator("article.user .body")).to_have_text("a carefully written question")


def test_the_stored_answer_is_the_final_one_and_never_shown_interrupted(page, server):
    # every stats line the page ever shows is recorded, so a flash of "interrupted" is caught
    page.evaluate(
        """() => {
          window.statsSeen = [];
          new MutationObserver(() => {
            for (const s of document.querySelectorAll('.stats')) window.statsSeen.push(s.textContent);
          }).observe(document.body, { subtree: true, childList: true, characterData: true });
        }"""
    )
    send(page, "Write three sentences about bread.", model="smollm2")
    wait_done(page)
    shown = last_answer(page).locator(".body").inner_text()
    assert not [s for s in page.evaluate("window.statsSeen") if "interrupted" in s]
    answer = stored(server, page)["messages"][-1]
    assert answer["status"] == "complete" and answer["stats"]["tokens"] >= 1
    page.reload()
    expect(last_answer(page).locator(".body")).to_have_text(shown, use_inner_text=True)


def test_an_error_is_shown_beside_the_answer_not_in_it(page, server):
    page.click("#toggle-settings")
    page.fill("#max-tokens", "100000")  # more than the tiny model's context: /v1 refuses
    page.locator("#max-tokens").dispatch_event("change")
    send(page, "will fail")
    expect(page.locator("body:not([data-busy])")).to_have_count(1, timeout=60_000)
    expect(last_answer(page).locator(".stats")).to_contain_text("error: ")
    answer = stored(server, page)["messages"][-1]
    assert answer["status"] == "error" and answer["content"] == ""
    assert "exceeds the model's context" in answer["stats"]["error"]


def test_settings_chosen_before_the_first_message_are_kept(page, server):
    page.click("#new-chat")
    page.click("#toggle-settings")
    page.fill("#system-prompt", "Answer like a pirate.")
    page.locator("#system-prompt").dispatch_event("change")
    page.fill("#temperature", "0.3")
    page.locator("#temperature").dispatch_event("change")
    send(page, "ahoy")
    wait_done(page)
    conversation = stored(server, page)
    assert conversation["system_prompt"] == "Answer like a pirate." and conversation["temperature"] == 0.3


def test_a_stopped_answer_shows_how_many_tokens_it_got(page, server):
    send_long(page)
    expect(last_answer(page).locator(".body")).to_have_text(re.compile(r"(\w+\W+){4}"), timeout=60_000)
    page.click("#stop")
    wait_done(page)
    expect(last_answer(page).locator(".stats")).to_contain_text(re.compile(r"^\d+ tokens .* stopped$"))
    assert stored(server, page)["messages"][-1]["stats"]["tokens"] >= 4


def test_the_phone_sidebar_opens_and_closes(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    page.goto(server.url)
    sidebar = page.locator("#sidebar")
    expect(sidebar).not_to_be_in_viewport()
    for close in (
        lambda: page.click("#close-sidebar"),
        lambda: page.mouse.click(380, 400),  # the backdrop, beside the sidebar
        lambda: page.keyboard.press("Escape"),
    ):
        page.click("#toggle-sidebar")
        expect(sidebar).to_be_in_viewport()
        close()
        expect(sidebar).not_to_be_in_viewport()
    context.close()


@pytest.fixture(scope="module")
def locked(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("locked")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tiny = next(a for a in server.args if a.startswith("tiny="))
    args = [sys.executable, "-m", "autan.cli", "serve", tiny, "--port", str(port), "--api-key", "sk-web-test"]
    locked = Server(f"http://127.0.0.1:{port}", [*args, "--db", f"sqlite:///{root / 'c.db'}"], root / "server.log")
    locked.start()
    yield locked
    locked.process.terminate()
    locked.process.wait(timeout=30)


def test_a_server_with_a_key_asks_for_it_once(browser, locked):
    context = browser.new_context()
    page = context.new_page()
    page.goto(locked.url)
    expect(page.locator("#api-key")).to_be_visible()
    assert httpx.get(f"{locked.url}/api/conversations").status_code == 401
    page.locator("#api-key").fill("wrong")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    page.locator("#api-key").fill("sk-web-test")
    page.click("#login-form button[type=submit]")
    send(page, "hello behind a key")
    wait_done(page)
    assert "sk-web-test" not in str(page.evaluate("JSON.stringify(localStorage)"))  # a session, not the key
    page.reload()
    expect(page.locator("article.user .body")).to_have_text("hello behind a key")
    context.close()


def test_the_api_docs_render_from_the_servers_own_files(browser, server):
    context = browser.new_context()
    page = context.new_page()
    errors, outside = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    page.goto(f"{server.url}/docs")
    expect(page.get_by_text("/v1/chat/completions").first).to_be_visible(timeout=30_000)
    assert not errors and not outside, (errors, outside)
    context.close()


def test_switching_chats_mid_answer_keeps_each_chat_its_own(page, server):
    """Another chat opened while an answer streams: the new chat still gets its title, the other
    keeps its own, and the answer, reopened, is the whole final one, not a partial copy."""
    other = httpx.post(f"{server.url}/api/conversations", json={"title": "Untouched chat", "model": "tiny"}).json()
    page.reload()
    page.click("#toggle-settings")
    page.fill("#max-tokens", "160")
    page.locator("#max-tokens").dispatch_event("change")
    send(page, "Tell a long tale about an owl who opens a bakery in Lyon.", model="smollm2")
    expect(last_answer(page).locator(".body")).to_have_text(re.compile(r"(\w+\W+){3}"), timeout=60_000)
    streaming = page.evaluate("location.hash").lstrip("#")
    page.locator("#conversations li", has_text="Untouched chat").locator(".title").click()
    expect(page.locator("#conversations li.active .title")).to_have_text("Untouched chat")
    page.locator(f'#conversations li[data-id="{streaming}"] .title').click()
    expect(page.locator("body:not([data-busy])")).to_have_count(1, timeout=120_000)
    assert httpx.get(f"{server.url}/api/conversations/{other['id']}").json()["title"] == "Untouched chat"
    stored_answer = httpx.get(f"{server.url}/api/conversations/{streaming}").json()
    assert stored_answer["title"] != "New chat"
    answer = stored_answer["messages"][-1]
    assert answer["status"] == "complete"
    page.locator(f'#conversations li[data-id="{streaming}"] .title').click()
    expect(last_answer(page).locator(".stats")).not_to_contain_text("interrupted")
    expect(last_answer(page).locator(".body")).to_contain_text(answer["content"].split()[-1])
