"""Every HTML page type rendered in headless Chromium: no console message, no empty plot.

Skipped where no Chromium is installed (`.ci/run` installs Debian's ``chromium``). Screenshots go
to ``$SERVESIM_SCREENSHOT_DIR`` when it is set (CI keeps them), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, servesim
from tests.test_compare import SWEEP
from tests.test_profiler_fit import synthetic_bundle
from tests.test_validate import write_run

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--enable-unsafe-swiftshader"]
CONSOLE = re.compile(r"CONSOLE[^\]]*\] (.*)")
# Chromium's software WebGL (SwiftShader) reports its own slow paths as console messages; they come
# from the headless renderer, not from the page, and are the only messages let through.
RENDERER_NOTICE = re.compile(r"GL Driver Message \(OpenGL, Performance")


def render(page: Path, screenshot_to: Path | None = None) -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, every console message) of ``page`` in headless Chromium.

    With ``screenshot_to``, the same Chromium run also saves a 1400 x 2600 screenshot there.
    """
    shot = [] if screenshot_to is None else ["--window-size=1400,2600", f"--screenshot={screenshot_to}"]
    proc = subprocess.run([CHROMIUM, *FLAGS, *shot, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    return proc.stdout, [m for m in CONSOLE.findall(proc.stderr) if not RENDERER_NOTICE.search(m)]


def empty_plots(dom: str) -> list[int]:
    """Indices of the plotly figures in ``dom`` that drew no trace (or the page has no figure: [-1])."""
    parts = dom.split('class="plotly-graph-div')[1:]
    return [i for i, part in enumerate(parts) if 'class="trace ' not in part] if parts else [-1]


def screenshot_path(name: str, fallback: Path) -> Path:
    """Where the screenshot of page ``name`` goes: ``$SERVESIM_SCREENSHOT_DIR`` (CI keeps it), else ``fallback``."""
    folder = Path(os.environ.get("SERVESIM_SCREENSHOT_DIR", fallback))
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / f"{name}.png").resolve()


def servesim_ok(*args: str, cwd: Path) -> None:
    proc = servesim(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """One page of each type: run, compare, plan, fit, validate."""
    tmp = tmp_path_factory.mktemp("pages")
    servesim_ok("run", "--set", "workload.num_requests=200", "--out", str(tmp / "run"), "-q", cwd=REPO)
    sweep = tmp / "sweep.yaml"
    sweep.write_text(SWEEP.replace("workload.num_requests: 60", "workload.num_requests: 30"))
    servesim_ok("compare", str(sweep), "--out", str(tmp / "compare"), "--workers", "1", "-q", cwd=REPO)
    servesim_ok("plan", str(REPO / "tests" / "data" / "plan-tiny.yaml"), "--out", str(tmp / "plan"), "--cache-dir", str(tmp / "cache"), "--workers", "1", "-q", cwd=REPO)
    runs = tmp / "runs"
    runs.mkdir()
    write_run(runs, "a", measured={"ttft_s": {"p50": 0.04, "p90": 0.08}, "tpot_s": {"p50": 0.01}})
    servesim_ok("validate", str(runs), "--out", str(tmp / "validate"), "--workers", "1", cwd=REPO)
    servesim_ok("fit", str(synthetic_bundle(tmp / "profile")), "-q", cwd=REPO)
    found = {"run": tmp / "run" / "report.html", "compare": tmp / "compare" / "compare.html",
             "plan": tmp / "plan" / "plan.html", "validate": next((tmp / "validate").glob("*.html")),
             "fit": tmp / "profile" / "fit_report.html"}
    assert all(page.is_file() for page in found.values()), found
    return found


@pytest.mark.parametrize("kind", ["run", "compare", "plan", "fit", "validate"])
def test_page_renders_without_console_messages_or_empty_plots(pages, kind, tmp_path):
    target = screenshot_path(kind, tmp_path)
    target.unlink(missing_ok=True)
    dom, messages = render(pages[kind], target)
    assert messages == [], messages
    assert empty_plots(dom) == [], f"{kind}: empty figures {empty_plots(dom)}"
    assert target.stat().st_size > 10_000


def test_the_check_sees_a_script_error_and_an_empty_plot(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body><div class="plotly-graph-div"></div><script>throw new Error("broken page")</script></body></html>')
    dom, messages = render(page)
    assert any("broken page" in m for m in messages) and empty_plots(dom) == [0]
