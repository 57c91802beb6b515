"""End-to-end: the report, the comparison, inference and `snakemake --report` through the real
snakemake CLI, on the tiny config with a second run and an inference folder.

The demo takes ten minutes, so it is not run here; the tiny pipeline goes through the same
rules, and a dry run checks that the demo config plans every figure.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from maskrcnn_pipeline.workflow.config import load_config, run_config
from tests.support.paths import REPO, TESTS_DATA
from tests.support.report import (
    COMPARISON_FIGURES,
    COMPARISON_TABLES,
    RUN_REPORT_FIGURES,
    RUN_REPORT_TABLES,
)
from tests.support.workflow import copy_workflow, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow

RUNS = ("tiny", "tiny_b")
INFERENCE = "tiny_val"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def two_run_config() -> dict:
    """tiny.yaml plus a second run (another seed) and inference on the val images folder."""
    config = yaml.safe_load((TESTS_DATA / "tiny.yaml").read_text())
    config["runs"]["tiny_b"] = copy.deepcopy(config["runs"]["tiny"]) | {"seed": 2}
    config["inference"] = {INFERENCE: {"run": "tiny", "images": "data/tiny/val"}}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-run pipeline run to completion, then `snakemake --report` (shared)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("reports"))
    (workdir / "config.yaml").write_text(yaml.safe_dump(two_run_config()))
    run_snakemake(workdir, timeout=600)
    run_snakemake(workdir, "--report", "results/report.html", timeout=300)
    return workdir


def assert_png(path: Path, min_bytes: int = 3000) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    assert len(data) > min_bytes, f"{path}: only {len(data)} bytes"
    with Image.open(path) as image:
        image.verify()


def test_every_run_has_every_figure_and_table(finished: Path) -> None:
    for run in RUNS:
        report = finished / "results" / run / "report"
        for name in RUN_REPORT_FIGURES:
            assert_png(report / name)
        for name in RUN_REPORT_TABLES:
            assert (report / name).stat().st_size > 0, name
        summary = (report / "summary.md").read_text()
        evals = [
            line
            for line in (finished / "results" / run / "train" / "metrics.jsonl").read_text().split()
            if '"eval"' in line
        ]
        if evals:
            assert "periodic evaluation(s) logged" in summary
        else:
            assert "This run had no periodic evaluation" in summary
        assert "## Provenance" in summary and "packages.torch" in summary


def test_per_category_ap_averages_to_the_overall_ap(finished: Path) -> None:
    """COCO's AP is the mean of the per-category APs over categories with ground truth."""
    for run in RUNS:
        eval_dir = finished / "results" / run / "eval" / "val"
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        per_category = pd.read_csv(eval_dir / "per_category.csv")
        for iou_type, stats in metrics.items():
            rows = per_category[per_category["iou_type"] == iou_type]
            for stat in ("AP", "AP50", "AP75"):
                assert rows[stat].dropna().mean() == pytest.approx(stats[stat], abs=1e-12)


def test_comparison_has_one_row_per_run(finished: Path) -> None:
    out = finished / "results" / "report"
    table = pd.read_csv(out / "comparison.csv", index_col="run")
    assert list(table.index) == list(RUNS)
    for run in RUNS:
        metrics = json.loads((finished / "results" / run / "eval/val/metrics.json").read_text())
        assert table.at[run, "segm_AP"] == pytest.approx(metrics["segm"]["AP"])
        assert table.at[run, "gpus"] == 0 and table.at[run, "dataset"] == "tiny"
    for name in COMPARISON_FIGURES:
        assert_png(out / name)
    for name in COMPARISON_TABLES:
        assert (out / name).stat().st_size > 0
    assert "Not drawn: NVIDIA" in (out / "comparison.md").read_text()


def test_inference_writes_results_and_an_overlay_per_image(finished: Path) -> None:
    out = finished / "results" / "tiny" / "inference" / INFERENCE
    images = sorted(p.name for p in (finished / "data" / "tiny" / "val").glob("*.jpg"))
    index = json.loads((out / "images.json").read_text())
    assert [image["file_name"] for image in index["images"]] == images
    assert [image["id"] for image in index["images"]] == list(range(1, len(images) + 1))
    assert [c["name"] for c in index["categories"]] == ["circle", "square", "triangle", "star"]
    predictions = json.loads((out / "predictions.json").read_text())
    assert {p["image_id"] for p in predictions} <= set(range(1, len(images) + 1))
    assert all({"bbox", "segmentation", "score", "category_id"} <= set(p) for p in predictions)
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert overlays == sorted(Path(name).stem + ".png" for name in images)
    for name in overlays:
        assert_png(out / "overlays" / name, min_bytes=1000)
    assert_png(out / "sample.png")


def test_redrawing_reruns_neither_the_model_nor_the_reports(finished: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "wf"
    shutil.copytree(finished, workdir, symlinks=True)
    assert planned_jobs(workdir) == set()
    script = workdir / "scripts" / "overlay.py"
    script.write_text(script.read_text() + "\n# edited\n")
    assert planned_jobs(workdir) == {"overlay_inference"}
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["report"]["score_threshold"] = 0.3
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(workdir) == {"overlay_inference", "report"}


# --- snakemake --report -----------------------------------------------------------------------


def embedded(html: str, name: str) -> dict:
    """A JSON table the HTML report embeds as ``<script id="NAME">var NAME = {...};``."""
    pattern = rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>'
    match = re.search(pattern, html, flags=re.DOTALL)
    assert match, f"the report embeds no {name}"
    return json.loads(match.group(1))


def expected_report_items() -> dict[str, set[str]]:
    """Every figure and table marked for the report, by category."""
    items = {
        run: {f"results/{run}/report/{name}" for name in (*RUN_REPORT_FIGURES, "metrics.html")}
        for run in RUNS
    }
    items["tiny"].add(f"results/tiny/inference/{INFERENCE}/sample.png")
    items["All runs"] = {
        f"results/report/{name}" for name in (*COMPARISON_FIGURES, "comparison.html")
    }
    return items


def test_html_report_holds_every_figure_by_run_with_captions(finished: Path) -> None:
    html = (finished / "results" / "report.html").read_text()
    categories = embedded(html, "categories")
    found = {
        category: {path for paths in subcategories.values() for path in paths}
        for category, subcategories in categories.items()
    }
    assert found == expected_report_items()
    assert set(categories["tiny"]) == {
        "1. Metrics",
        "2. Training",
        "3. Evaluation",
        f"4. Inference: {INFERENCE}",
    }
    results = embedded(html, "results")
    for path, entry in results.items():
        assert entry["caption"].strip(), f"{path} has no caption"
        assert entry["data_uri"].startswith("data:"), path
    assert "tiny_b" in results["results/tiny_b/report/losses.png"]["caption"]
    assert "Mask R-CNN pipeline report" in html


class _AppText(HTMLParser):
    """The text rendered inside the report's <div id="app"> (empty before its scripts run)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.depth += tag not in ("br", "img", "input", "meta", "link", "hr")
        elif tag == "div" and ("id", "app") in attrs:
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth and data.strip():
            self.text.append(data.strip())


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [
            shutil.which("chromium") or "chromium",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run does)"
)
def test_html_report_renders_in_headless_chromium(finished: Path, tmp_path: Path) -> None:
    url = (finished / "results" / "report.html").as_uri()
    dom = chromium("--dump-dom", url, tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _AppText()
    parser.feed(dom.stdout)
    rendered = " ".join(parser.text)
    for text in ("All runs", "tiny", "tiny_b", "Mask R-CNN pipeline report", "NVIDIA"):
        assert text in rendered, f"{text!r} not rendered: {rendered[:500]}"

    screenshot = tmp_path / "report.png"
    shot = chromium("--window-size=1280,900", f"--screenshot={screenshot}", url, tmp_path=tmp_path)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        pixels = image.convert("RGB")
        colors = pixels.getcolors(maxcolors=1 << 20) or []
        white = sum(count for count, rgb in colors if min(rgb) > 245)
        # The report is mostly white by design (measured 79-95%, depending on whether the
        # sidebar's colour transition finished); a blank page is ~100% white in one colour.
        assert len(colors) > 50, "the page rendered nearly uniform"
        assert white < 0.98 * pixels.width * pixels.height, "the page rendered blank"


# --- the demo config --------------------------------------------------------------------------


def test_demo_config_plans_every_figure(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path)
    shutil.copy2(REPO / "config.yaml", workdir / "config.yaml")
    result = run_snakemake(
        workdir, "--dry-run", "--configfile", "configs/demo.yaml", "--replace-workflow-config"
    )
    planned = result.stdout + result.stderr
    outputs = {
        *(f"results/demo/report/{name}" for name in (*RUN_REPORT_FIGURES, *RUN_REPORT_TABLES)),
        *(f"results/report/{name}" for name in (*COMPARISON_FIGURES, *COMPARISON_TABLES)),
        "results/demo/inference/shapes_val/overlays",
        "results/demo/inference/shapes_val/sample.png",
    }
    missing = sorted(path for path in outputs if path not in planned)
    assert not missing, f"the demo does not plan {missing}"


def test_demo_evaluates_during_training() -> None:
    """Without periodic evaluation ap_vs_iteration.png would be a placeholder in the demo."""
    config = load_config(REPO / "configs" / "demo.yaml")
    settings = run_config(config, "demo")
    assert 0 < settings["eval_period"] < settings["solver"]["max_iter"]
