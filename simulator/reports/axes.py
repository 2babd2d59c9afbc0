"""Axis conventions shared by the HTML reports."""

#: d3-format for the tick labels of every log axis. Without a tick format, plotly labels the
#: ticks between powers of ten with their leading digit alone (a "2" above "10" that means 20);
#: with one it prints each tick's full value ("20", "50", "200", "0.05"). Units go in the axis
#: title. (plotly.js ``src/plots/cartesian/axes.js``, ``formatLog``: a set ``tickformat`` takes
#: precedence over the digit-only ``D1``/``D2`` labels.)
LOG_TICKS = "~g"


def fit_title(text: str, width: int = 90) -> str:
    """``text`` broken into lines of at most ``width`` characters with ``<br>``, for a figure title.

    plotly draws a title on one line and cuts it at the figure's edge; a title built from data (a
    legend of schedulers, the series shown) can run past it. ``width`` 90 characters fits the
    reports' figures at plotly's default 17 px title font in a 1,000 px wide page.
    """
    import textwrap

    return "<br>".join(textwrap.wrap(text, width)) or text
