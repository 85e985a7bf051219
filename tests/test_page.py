"""`scaling report`: one self-contained HTML page, checked as text and in a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.analysis.approach3 import ChinchillaLaw
from scaling.cli import main

TRUE = ChinchillaLaw.from_params(E=1.7, A=400.0, B=2000.0, alpha=0.34, beta=0.36)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page of a 5 sizes x 4 token budgets grid of losses from a known law with 0.5% noise, as a CSV."""
    folder = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    rows = [{"params": n, "tokens": d, "loss": float(TRUE.predict(n, d)) * np.exp(0.005 * rng.standard_normal())}
            for n in np.geomspace(1e7, 1e9, 5) for d in np.geomspace(1e9, 1e11, 4)]
    pd.DataFrame(rows).to_csv(folder / "grid.csv", index=False)
    assert main(["report", str(folder / "grid.csv"), "--n-boot", "20", "--out", str(folder / "page.html")]) == 0
    return folder / "page.html"


def test_page_holds_the_law_table_figures_runs_and_diagnostics(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for heading in ("Fitted law", "Compute-optimal allocation", "Figures", "Diagnostics", "Runs"):
        assert f"<h2>{heading}</h2>" in text
    # every parameter with its interval; the grid spans 6ND 6e16..6e20, so the table's 1e22 row is extrapolated
    for name in ("E", "A", "B", "alpha", "beta", "a"):
        assert re.search(rf"<td class=\"text\">{name}</td><td>[^<]+</td><td class=\"text\">\[", text), name
    assert "data: C = 6ND from 6e+16 to 6e+20 FLOPs" in text
    rows = re.findall(r"<tr class=\"extrapolated\"><td>([^<]+)</td>", text)
    assert rows and all(float(c) > 6e21 or float(c) < 6e15 for c in rows)
    assert re.search(r"<tr><td>1e\+20</td>", text)  # inside the data: not marked
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) >= 6 and all(len(i) > 10_000 for i in images)
    assert "compute_optimal.png" in text and "predicted_vs_observed.png" in text
    assert text.count("<tr>") >= 20  # the 20 runs, beside the law's and table's rows
    assert "http" not in text.replace("http://www.w3.org", "")  # nothing fetched from elsewhere


def test_page_loads_in_a_headless_browser_without_errors(page: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("SCALING_REQUIRE_BROWSER"):
            pytest.fail("SCALING_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")
        pytest.skip("no chromium on PATH (CI installs it and sets SCALING_REQUIRE_BROWSER=1)")
    sync_api = pytest.importorskip("playwright.sync_api") if not os.environ.get("SCALING_REQUIRE_BROWSER") \
        else __import__("playwright.sync_api", fromlist=["sync_playwright"])
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            tab.goto(page.as_uri(), wait_until="load")
            sizes = tab.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
            headings = tab.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
        finally:
            browser.close()
    assert errors == []
    assert len(sizes) >= 6 and all(done and width >= 600 for done, width in sizes)  # every PNG decoded
    assert "Compute-optimal allocation" in headings
