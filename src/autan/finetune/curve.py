"""The loss curve of a run as an SVG picture: training loss per step, validation loss per
evaluation. Written by hand (no plotting library): a few lines and labels."""

from __future__ import annotations

from html import escape
from pathlib import Path

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 640, 360, 60, 40, 20, 20


def write(path: Path, history: list[dict]) -> Path:
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    points = train + val
    last_step = max((s for s, _ in points), default=1)
    high = max((v for _, v in points), default=1.0)
    low = min((v for _, v in points), default=0.0)
    low, high = (low, high) if high > low else (low - 0.5, high + 0.5)

    def x(step: float) -> float:
        return LEFT + (step / max(1, last_step)) * (WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#888"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#888"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">step (of {last_step})</text>',
        f'<text x="{LEFT - 6}" y="{y(high) + 4:.1f}" text-anchor="end">{high:.3g}</text>',
        f'<text x="{LEFT - 6}" y="{y(low) + 4:.1f}" text-anchor="end">{low:.3g}</text>',
    ]
    if train:
        line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in train)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#1c7ed6" stroke-width="1.5"/>')
    if val:
        line = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in val)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#e8590c" stroke-width="1.5"/>')
        parts += [f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="#e8590c"/>' for s, v in val]
    legend = [("training loss", "#1c7ed6")] + ([("validation loss", "#e8590c")] if val else [])
    for k, (name, colour) in enumerate(legend):
        parts.append(f'<text x="{WIDTH - RIGHT - 4}" y="{TOP + 14 + 16 * k}" text-anchor="end" fill="{colour}">'
                     f"{escape(name)}</text>")  # fmt: skip
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")
    return path
