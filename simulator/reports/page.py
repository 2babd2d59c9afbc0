"""The shell every servesim HTML page shares: one inline copy of plotly.js, the style sheet,
the metric definitions, and figures as fragments that use that one copy."""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs


DEFINITIONS = (
    "TTFT = first-token time − arrival time (the first token appears at the end of the iteration "
    "that finishes the prompt). TPOT = (finish time − first-token time) / (output tokens − 1), "
    "over requests with more than one output token. E2E = finish time − arrival time. "
    "TBT = every gap between consecutive output tokens of a request. SLO attainment = fraction of "
    "requests meeting every SLO set in the scenario; goodput = such requests per second. "
    "Latency plots show completed requests only."
)
PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 1.5em 1em 0; display: inline-table;
        vertical-align: top; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; max-width: 60em; }
"""


def write_page(path: str | Path, title: str, sections: list[tuple[str, str]], intro_html: str = "") -> Path:
    """Write a self-contained HTML page (plotly.js inline, works offline) and return its path.

    Args:
        path: the file to write; its folder is created.
        title: the page title and top heading (plain text).
        sections: (heading in plain text, body HTML) pairs, in order.
        intro_html: HTML placed under the title (notes, definitions).
    """
    body = "\n".join(f"<h2>{html.escape(name)}</h2>\n{content}" for name, content in sections)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{intro_html}\n{body}\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _figure_html(fig: go.Figure) -> str:
    """A figure as an HTML fragment that relies on the page's single plotly.js copy."""
    return fig.to_html(
        full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True}
    )
