#!/usr/bin/env python3
"""Charts several `medledger bench --grow-to` curves on one SVG: committed tx/s against state
entries, one line per CSV (docs/PERFORMANCE.md, "Throughput as the chain grows").

usage: scripts/curve-compare.py OUT.svg LABEL=CURVE.csv [LABEL=CURVE.csv ...]
Standard library only.
"""
import csv
import sys

COLOURS = ["#888888", "#1f6fb2", "#c0392b", "#27ae60"]
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 420, 70, 20, 30, 50


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [(int(row["entries_after"]), int(row["tps"])) for row in rows]


def main():
    out, series = sys.argv[1], []
    for arg in sys.argv[2:]:
        label, path = arg.split("=", 1)
        series.append((label, load(path)))
    x_max = max(x for _, points in series for x, _ in points)
    y_max = max(y for _, points in series for _, y in points) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + plot_w * x / x_max

    def py(y):
        return TOP + plot_h * (1 - y / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>',
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle">state entries</text>',
        f'<text x="15" y="{TOP + plot_h / 2}" transform="rotate(-90 15 {TOP + plot_h / 2})" '
        f'text-anchor="middle">committed tx/s</text>',
    ]
    for i in range(6):
        y = y_max * i / 5
        parts.append(f'<text x="{LEFT - 6}" y="{py(y) + 4}" text-anchor="end">{y:,.0f}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{py(y)}" x2="{LEFT + plot_w}" y2="{py(y)}" stroke="#eeeeee"/>')
        x = x_max * i / 5
        parts.append(f'<text x="{px(x)}" y="{TOP + plot_h + 18}" text-anchor="middle">{x:,.0f}</text>')
    for n, (label, points) in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{LEFT + 10}" y="{TOP + 14 + 16 * n}" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
