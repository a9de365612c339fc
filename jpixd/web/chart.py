"""The console's chart: mails sent, bounces and complaints per hour over the last week,
as an SVG drawn on the server (no script, nothing for the CSP to allow). Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

W, H, LEFT, BOTTOM, TOP = 720, 220, 44, 28, 12
DATE_WIDTH = 34  # "12/31" at font-size 11
SERIES = (("sent", "#0b5cad", "送信"), ("bounce", "#b3261e", "バウンス"),
          ("complaint", "#8a5a00", "苦情"))


def hours(now: datetime, days: int = 7) -> list[datetime]:
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [end - timedelta(hours=h) for h in range(days * 24 - 1, -1, -1)]


def svg(activity: dict[str, dict[str, int]], now: datetime, tz: tzinfo) -> str:
    slots = hours(now)
    keys = [t.strftime("%Y-%m-%dT%H") for t in slots]
    top = max([1, *(activity.get(k, {}).get(name, 0) for k in keys for name, _, _ in SERIES)])
    width = (W - LEFT - 8) / len(slots)
    plot_h = H - BOTTOM - TOP

    def y(v: int) -> float:
        return TOP + plot_h - plot_h * v / top

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" '
             f'role="img" aria-label="過去7日間の1時間ごとの送信数・バウンス数・苦情数">']
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - 8}" y2="{TOP + plot_h}" '
                 'stroke="#aeb8c4"/>')
    for frac in (0.0, 0.5, 1.0):
        v = round(top * frac)
        parts.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#5b6776">{v}</text>')
    for i, t in enumerate(slots):  # a tick and the date at each local midnight
        local = t.astimezone(tz)
        if local.hour == 0:
            x = LEFT + i * width
            parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" '
                         'stroke="#e3e8ee"/>')
            if x + 2 + DATE_WIDTH <= W:  # a midnight just past has no room to the right
                parts.append(f'<text x="{x + 2:.1f}" y="{H - 10}" font-size="11" '
                             f'fill="#5b6776">{local.month}/{local.day}</text>')
    for name, color, label in SERIES:
        points = " ".join(
            f"{LEFT + (i + 0.5) * width:.1f},{y(activity.get(k, {}).get(name, 0)):.1f}"
            for i, k in enumerate(keys))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                     f'points="{points}"><title>{label}</title></polyline>')
    parts.append("</svg>")
    # The legend is the page's text, not the drawing's: readable at any width (drawn on
    # the plot's edge it was 5 px tall on a phone). The drawing scrolls in its own box.
    # (Colours by class: the CSP allows no inline style; jpixd.css has the same ones.)
    legend = "".join(f'<span><i class="series-{name}"></i>{label}</span>'
                     for name, _, label in SERIES)
    return (f'<div class="chart-legend">{legend}</div>'
            f'<div class="chart-wrap">{"".join(parts)}</div>')


def totals(activity: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name: sum(v.get(name, 0) for v in activity.values()) for name, _, _ in SERIES}
