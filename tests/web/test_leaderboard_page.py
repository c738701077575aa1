"""The Leaderboard page in a real browser: models as they ran against tasks, with speed, memory,
the safety figures and a chart per task; it has its own address and gives way to a chat."""

import pytest
from playwright.sync_api import expect

from autan.eval import leaderboard
from autan.eval.leaderboard import Row

pytestmark = pytest.mark.default_model


def test_the_leaderboard_shows_each_model_as_it_ran(page):
    run = dict(n=1838, command="autan eval piqa --model smollm2")
    leaderboard.record([
        Row("smollm2", "piqa", "acc_norm", 0.6447, stderr=0.0112, quantization="Q4_1", tokens_per_second=262.0,
            memory_bytes=900_000_000, **run),
        Row("smollm2", "piqa", "acc_norm", 0.6692, stderr=0.0110, quantization="bfloat16", **run),
        Row("smollm2", "safety/rails", "unsafe_answered", 0.031, n=32, quantization="Q4_1"),
        Row("smollm2", "mt_bench[judge]", "score", 6.2, n=160, stderr=0.31, quantization="Q4_1"),
        Row("smollm2", "mt_bench[judge]", "score", 3.1, n=160, stderr=0.2, quantization="bfloat16"),
    ])  # fmt: skip
    page.click("#show-leaderboard")
    board = page.locator("#leaderboard")
    expect(board).to_be_visible()
    expect(page.locator("#composer")).to_be_hidden()
    rows = board.locator("tbody tr")
    expect(rows).to_have_count(2)
    headers = board.locator("thead th").all_inner_texts()
    assert headers[:4] == ["Model", "mt_bench[judge]/score", "piqa/acc_norm", "safety/rails/unsafe_answered"]
    quantized = board.locator("tbody tr", has_text="Q4_1")
    expect(quantized.locator("td").nth(0)).to_have_text("6.20 ±0.31")  # a judge's rating, 1-10
    expect(quantized.locator("td").nth(1)).to_have_text("64.5 ±1.1")
    expect(quantized.locator("td").nth(2)).to_have_text("3.1%")
    expect(quantized.locator("td").nth(3)).to_have_text("262")
    expect(quantized.locator("td").nth(4)).to_have_text("900 MB")
    expect(board.locator("tbody tr", has_text="bfloat16").locator("td").nth(2)).to_have_text("–")
    # a chart per column, a bar per model that has the figure, longer for the better score
    charts = board.locator("svg")
    expect(charts).to_have_count(3)
    for chart, (first, second) in ((charts.nth(0), (6.2, 3.1)), (charts.nth(1), (0.6447, 0.6692))):
        bars = chart.locator("rect")
        expect(bars).to_have_count(2)
        widths = [float(bars.nth(k).get_attribute("width")) for k in range(2)]
        assert widths[1] / widths[0] == pytest.approx(second / first, rel=1e-3)
    # a rating's bar is drawn on 0-10: 6.2 fills 62% of the width a share of 1 would
    assert float(charts.nth(0).locator("rect").nth(0).get_attribute("width")) == pytest.approx(
        0.62 / 0.6447 * widths[0], rel=1e-3
    )
    assert page.evaluate("location.hash") == "#leaderboard"
    page.reload()
    expect(page.locator("#leaderboard tbody tr")).to_have_count(2)
    page.click("#new-chat")
    expect(page.locator("#leaderboard")).to_be_hidden()
    expect(page.locator("#composer")).to_be_visible()
