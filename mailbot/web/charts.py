"""Server-side charts as inline SVG: no JavaScript, nothing from the network, and they
print. Each function returns a complete ``<svg>`` element as markup-safe text."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from markupsafe import Markup

W, H = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 36


def _nice_max(value: float) -> int:
    if value <= 5:
        return 5
    for step in (10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step:
            return step
    return int(value) + 1


def _y_ticks(ymax: int) -> list[int]:
    step = max(1, ymax // 5)
    return list(range(0, ymax + 1, step))


def _frame(title: str, body: list[str], ymax: int, x_labels: list[tuple[float, str]],
           y_label: str) -> Markup:
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for tick in _y_ticks(ymax):
        y = TOP + plot_h - plot_h * tick / ymax
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{tick}</text>')
    for frac, label in x_labels:
        x = LEFT + plot_w * frac
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" '
                     f'y2="{TOP + plot_h + 4}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{TOP + plot_h + 18}" '
                     f'text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{W - RIGHT}" y1="{TOP + plot_h}" '
                 f'y2="{TOP + plot_h}"/>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>')
    parts.append(f'<text class="unit" x="{LEFT}" y="{TOP - 4}">{escape(y_label)}</text>')
    parts.extend(body)
    parts.append("</svg>")
    return Markup("".join(parts))


def depletion_chart(*, title: str, opens: datetime, until: datetime, bought: int,
                    points: list[tuple[datetime, int]], tz: ZoneInfo, y_label: str) -> Markup:
    """Codes left over time, as a step line from the window's opening."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    end = max(until, opens + timedelta(minutes=10),
              *(at + timedelta(seconds=30) for at, _ in points))
    span = (end - opens).total_seconds()
    ymax = _nice_max(bought)

    def xy(at: datetime, left: int) -> tuple[float, float]:
        frac = min(1.0, max(0.0, (at - opens).total_seconds() / span))
        return LEFT + plot_w * frac, TOP + plot_h - plot_h * left / ymax

    x0, y0 = xy(opens, bought)
    path = [f"M{x0:.1f},{y0:.1f}"]
    left = bought
    for at, after in points:
        x, _ = xy(at, left)
        _, y = xy(at, after)
        path.append(f"H{x:.1f}V{y:.1f}")
        left = after
    x_end, _ = xy(end, left)
    path.append(f"H{x_end:.1f}")
    labels = []
    for i in range(5):
        at = opens + timedelta(seconds=span * i / 4)
        local = at.astimezone(tz)
        fmt = "%H:%M" if span <= 36 * 3600 else "%d.%m"
        labels.append((i / 4, local.strftime(fmt)))
    body = [f'<path class="line" d="{"".join(path)}"/>']
    if points:
        x, y = xy(*points[-1])
        body.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3.5"/>')
    return _frame(title, body, ymax, labels, y_label)


def bars_chart(*, title: str, values: list[int], y_label: str, every: int = 10) -> Markup:
    """One bar per minute after the window opened; labelled every ``every`` minutes."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    n = max(1, len(values))
    ymax = _nice_max(max(values, default=0))
    bw = plot_w / n
    body = []
    for i, v in enumerate(values):
        if not v:
            continue
        h = plot_h * v / ymax
        body.append(f'<rect class="bar" x="{LEFT + i * bw + bw * 0.1:.1f}" '
                    f'y="{TOP + plot_h - h:.1f}" width="{bw * 0.8:.1f}" height="{h:.1f}">'
                    f"<title>+{i} min: {v}</title></rect>")
    labels = [((i + 0.5) / n, f"+{i}") for i in range(0, n, every)]
    return _frame(title, body, ymax, labels, y_label)
