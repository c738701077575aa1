"""The chat app as a user drives it: stream, stop, regenerate, branch, edit, reload, sidebar,
export/import, and answers that try to run script."""

import json
import re

import httpx
from playwright.sync_api import expect

pytestmark = __import__("pytest").mark.default_model


def send(page, text, model="tiny"):
    page.select_option("#model", model)
    page.fill("#input", text)
    page.press("#input", "Enter")


# Greedy, the default model's answer to this runs past 1024 tokens (`autan run smollm2 LONG
# --temperature 0`): a test that stops or kills it mid-answer cannot race its natural end. Sampled,
# a short story or poem sometimes ends within a second, before the stop (a CI run saw 49 tokens).
LONG = "Write a long story about a dragon who learns to bake bread."


def send_long(page):
    page.click("#toggle-settings")
    page.fill("#temperature", "0")
    page.locator("#temperature").dispatch_event("change")
    page.click("#toggle-settings")
    send(page, LONG, model="smollm2")


def last_answer(page):
    return page.locator("article.assistant").last


def wait_done(page):
    """Until the newest answer has its stats line: it is finished (or stopped) and saved."""
    expect(page.locator("body:not([data-busy])")).to_have_count(1, timeout=120_000)
    stats = last_answer(page).locator(".stats")
    expect(stats).to_contain_text(re.compile(r"\b(stop|length|model_length|stopped)$"))
    expect(page.locator("#send")).to_be_visible()


def test_stream_regenerate_switch_branches_edit_and_reload(page):
    send(page, "hello there")
    expect(page.locator("article.user .body")).to_have_text("hello there")
    wait_done(page)
    first = last_answer(page).locator(".body").inner_text()
    assert first.strip()
    expect(last_answer(page).locator(".stats")).to_contain_text("tok/s")
    expect(last_answer(page).locator(".stats")).to_contain_text("first token")

    last_answer(page).get_by_role("button", name="Regenerate this answer").click()
    wait_done(page)
    expect(last_answer(page).locator(".branch")).to_have_text("2/2")
    last_answer(page).get_by_role("button", name="Previous version").click()
    expect(last_answer(page).locator(".branch")).to_have_text("1/2")
    expect(last_answer(page).locator(".body")).to_have_text(first, use_inner_text=True)  # as read above

    page.locator("article.user").get_by_role("button", name="Edit this message").click()
    page.get_by_label("Edit message").fill("hello again")
    page.get_by_role("button", name="Save the edit and send").click()
    wait_done(page)
    expect(page.locator("article.user .body")).to_have_text("hello again")
    expect(page.locator("article.user .branch")).to_have_text("2/2")

    page.reload()
    expect(page.locator("article.user .body")).to_have_text("hello again")
    page.locator("article.user").get_by_role("button", name="Previous version").click()
    expect(page.locator("article.user .body")).to_have_text("hello there")
    expect(last_answer(page).locator(".branch")).to_have_text("2/2")  # that branch's newest answer
    expect(page.locator("#conversations li")).not_to_have_count(0)


def test_stop_keeps_what_was_written(page, server):
    send_long(page)
    body = last_answer(page).locator(".body")
    expect(body).to_have_text(re.compile(r"\w+\W+\w+\W+\w+"), timeout=60_000)
    page.keyboard.press("Escape")
    wait_done(page)
    expect(last_answer(page).locator(".stats")).to_contain_text("stopped")
    kept = body.inner_text()
    page.reload()
    expect(last_answer(page).locator(".body")).to_have_text(kept, use_inner_text=True)
    expect(last_answer(page).locator(".stats")).to_contain_text("stopped")
    conversation = page.evaluate("location.hash").lstrip("#")
    assert httpx.get(f"{server.url}/api/conversations/{conversation}").json()["temperature"] == 0  # greedy, as sent


def test_sidebar_rename_search_delete(page, server):
    send(page, "a question about Roquefort-sur-Soulzon cheese")
    wait_done(page)
    page.once("dialog", lambda d: d.accept("Fromage talk"))
    page.locator("#conversations li.active").get_by_role("button", name=re.compile("^Rename")).click()
    expect(page.locator("#conversations li.active .title")).to_have_text("Fromage talk")
    page.fill("#search", "Soulzon")  # matches the contents, not only titles (a word no random answer spells)
    expect(page.locator("#conversations li .title")).to_have_text(["Fromage talk"])
    page.fill("#search", "no-such-thing-anywhere")
    expect(page.locator("#conversations li")).to_have_count(0)
    page.fill("#search", "")
    expect(page.locator("#conversations li", has_text="Fromage talk")).to_have_count(1)
    before = page.locator("#conversations li").count()
    page.once("dialog", lambda d: d.accept())
    page.locator("#conversations li", has_text="Fromage talk").get_by_role("button", name=re.compile("^Delete")).click()
    expect(page.locator("#conversations li")).to_have_count(before - 1)
    assert all(c["title"] != "Fromage talk" for c in httpx.get(f"{server.url}/api/conversations").json())


def test_export_import_and_untrusted_html_is_text(page, server, tmp_path):
    send(page, "export me")
    wait_done(page)
    conversation = page.evaluate("location.hash").lstrip("#")
    document = httpx.get(f"{server.url}/api/conversations/{conversation}/export?format=json").json()
    markdown = httpx.get(f"{server.url}/api/conversations/{conversation}/export?format=md").text
    assert "## User\n\nexport me" in markdown

    evil = 'Look: <script>window.pwned = 1</script> <img src=x onerror="window.pwned = 2"> **bold**'
    document["title"] = "Imported evil"
    for m in document["messages"]:
        if m["role"] == "assistant":
            m["content"] = evil
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(document))
    page.set_input_files("#import", str(path))
    expect(page.locator("#conversations li.active .title")).to_have_text("Imported evil")
    answer = last_answer(page).locator(".body")
    expect(answer).to_contain_text("<script>window.pwned = 1</script>")  # shown as text
    expect(answer).to_contain_text('<img src=x onerror="window.pwned = 2">')
    expect(answer.locator("strong")).to_have_text("bold")  # markdown still renders
    assert answer.locator("script, img").count() == 0
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None


def test_server_killed_mid_stream_keeps_the_partial_answer(page, server):
    send_long(page)
    body = last_answer(page).locator(".body")
    expect(body).to_have_text(re.compile(r"(\w+\W+){6}"), timeout=60_000)
    page.wait_for_timeout(700)  # at least one save after these words
    shown = body.inner_text()
    server.kill()
    server.start()
    page.reload()
    saved = last_answer(page).locator(".body").inner_text()
    assert saved.strip() and shown.startswith(saved.strip()[: len(saved.strip()) // 2])
    assert len(saved.split()) >= 3
    expect(last_answer(page).locator(".stats")).to_contain_text(re.compile("interrupted|error|stopped"))
