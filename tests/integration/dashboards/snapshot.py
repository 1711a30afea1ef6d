"""An SVG picture of dashboard panels drawn from a real Prometheus' query_range results (no
plotting library: polylines on a grid). Used to make docs/img/dashboard.svg from the live scenario
of test_dashboard_and_alert_queries.py (OPSAGENT_DASHBOARD_SNAPSHOT=PATH)."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

from tests.fixtures.prometheus import Prometheus

W, H, COLS = 420, 210, 3
PAD_L, PAD_R, PAD_T, PAD_B = 62, 12, 30, 48
COLORS = ["#3274d9", "#e0752d", "#56a64b", "#c4162a", "#8f3bb8", "#f2cc0c", "#1f78c1", "#705da0"]


def query_range(prom: Prometheus, expr: str, start: float, end: float, step: float,
                ) -> list[dict[str, Any]]:
    data = prom._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}",
                                              "end": f"{end:.3f}", "step": f"{step:g}"})
    result: list[dict[str, Any]] = data["result"]
    return result


def _fmt(v: float, unit: str) -> str:
    if unit == "bytes":
        for u in ("B", "KiB", "MiB", "GiB"):
            if abs(v) < 1024 or u == "GiB":
                return f"{v:.0f} {u}" if u == "B" else f"{v:.1f} {u}"
            v /= 1024
    if unit == "percentunit":
        return f"{v * 100:.0f}%"
    return f"{v:.3g}"


def _legend(metric: dict[str, str], fmt: str) -> str:
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out.strip() or ",".join(f"{k}={v}" for k, v in metric.items() if k != "__name__")


def panel_svg(x0: int, y0: int, title: str, unit: str,
              series: Sequence[tuple[str, list[tuple[float, float]]]], start: float,
              end: float) -> list[str]:
    out = [f'<rect x="{x0 + 4}" y="{y0 + 4}" width="{W - 8}" height="{H - 8}" rx="4" '
           'fill="#181b1f" stroke="#2c3235"/>',
           f'<text x="{x0 + 14}" y="{y0 + 22}" fill="#d8d9da" font-size="13" '
           f'font-weight="bold">{html.escape(title)}</text>']
    pts = [v for _, s in series for _, v in s]
    if not pts:
        out.append(f'<text x="{x0 + W / 2}" y="{y0 + H / 2}" fill="#8e8e8e" font-size="12" '
                   'text-anchor="middle">no data</text>')
        return out
    lo, hi = min(0.0, min(pts)), max(pts)
    hi = hi if hi > lo else lo + 1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    for i in range(5):   # horizontal grid with value labels
        v = lo + (hi - lo) * i / 4
        y = y0 + PAD_T + ph - ph * i / 4
        out.append(f'<line x1="{x0 + PAD_L}" x2="{x0 + W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#2c3235"/>')
        out.append(f'<text x="{x0 + PAD_L - 6}" y="{y + 4:.1f}" fill="#8e8e8e" font-size="10" '
                   f'text-anchor="end">{html.escape(_fmt(v, unit))}</text>')
    for i, (label, s) in enumerate(series[:len(COLORS)]):
        coords = " ".join(
            f"{x0 + PAD_L + pw * (t - start) / (end - start):.1f},"
            f"{y0 + PAD_T + ph - ph * (v - lo) / (hi - lo):.1f}" for t, v in s)
        color = COLORS[i % len(COLORS)]
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" '
                   f'points="{coords}"/>')
        ly = y0 + H - PAD_B + 16 + 12 * (i // 2)
        lx = x0 + 14 + (i % 2) * (W // 2 - 10)
        if ly < y0 + H - 6:
            out.append(f'<rect x="{lx}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
            out.append(f'<text x="{lx + 14}" y="{ly - 4}" fill="#c7d0d9" font-size="10">'
                       f'{html.escape(label if len(label) <= 34 else "…" + label[-33:])}</text>')
    return out


def snapshot(prom: Prometheus, panels: Sequence[dict[str, Any]], window_secs: float,
             variables: dict[str, str]) -> str:
    end = time.time()
    start = end - window_secs
    step = max(1.0, window_secs / 120)
    rows = (len(panels) + COLS - 1) // COLS
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * COLS}" height="{H * rows + 34}"'
           ' font-family="Inter, Helvetica, Arial, sans-serif">',
           '<rect width="100%" height="100%" fill="#111217"/>',
           '<text x="12" y="22" fill="#d8d9da" font-size="15" font-weight="bold">opsagent '
           f'(deploy/grafana/opsagent.json), last {window_secs:.0f} s of a live test agent'
           '</text>']
    for n, p in enumerate(panels):
        series: list[tuple[str, list[tuple[float, float]]]] = []
        for t in p["targets"]:
            expr = t["expr"]
            for var, value in variables.items():
                expr = expr.replace(var, value)
            for r in query_range(prom, expr, start, end, step):
                pts = [(float(ts), float(v)) for ts, v in r["values"] if v not in ("NaN", "+Inf")]
                series.append((_legend(r["metric"], t.get("legendFormat", "")), pts))
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        out += panel_svg((n % COLS) * W, 34 + (n // COLS) * H, p["title"], unit, series,
                         start, end)
    out.append("</svg>")
    return "\n".join(out) + "\n"
