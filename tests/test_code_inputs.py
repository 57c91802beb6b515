"""The code inputs of every rule are exactly the project modules its job can import.

The expected closure is computed here by the standard library's :mod:`modulefinder` (an
implementation independent of workflow/code_inputs.py), restricted to the checkout so
that it never walks torch; the actual inputs are what `snakemake --dry-run` plans.
"""

from __future__ import annotations

import ast
import re
import subprocess
from modulefinder import ModuleFinder
from pathlib import Path

import pytest

from maskrcnn_pipeline.workflow.code_inputs import BY_HAND_ONLY, code_inputs
from tests.support.paths import BIN, REPO, TESTS_DATA
from tests.support.workflow import tool_env

PACKAGE = "maskrcnn_pipeline"
EVALUATION_HOOK = "maskrcnn_pipeline.train.evaluation_hook"
#: The rules that call the package from Snakemake's own Python (`run:`) and the module.
RUN_MODULES = {"build_image": "maskrcnn_pipeline.workflow.images"}
RUN_MODULES["describe_image"] = RUN_MODULES["build_image"]


def expected_closure(start: Path, excludes: set[str]) -> set[str]:
    """Project files a run of ``start`` can import, by modulefinder, ``excludes`` left out."""
    finder = ModuleFinder(path=[str(REPO)], excludes=sorted(excludes))
    finder.run_script(str(start))
    files = {
        Path(module.__file__).resolve().relative_to(REPO).as_posix()
        for name, module in finder.modules.items()
        if name.split(".")[0] == PACKAGE and module.__file__
    }
    return files


def planned_jobs(configfile: Path) -> list[dict[str, str]]:
    """Each job of a --forceall dry run: its rule, input list and shell command."""
    result = subprocess.run(
        [str(BIN / "snakemake"), "-n", "-p", "--forceall", "--configfile", str(configfile)],
        cwd=REPO,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", result.stdout):
        header = re.match(r"(?:local)?rule (\w+):\n", block)
        if not header:
            continue
        inputs = re.search(r"^    input: (.*)$", block, re.MULTILINE)
        jobs.append(
            {
                "rule": header.group(1),
                "inputs": inputs.group(1).split(", ") if inputs else [],
                "text": block,
            }
        )
    return jobs


def eval_period(job_text: str) -> int:
    """The run's eval_period, from the settings JSON in the planned train command."""
    return int(re.search(r'"eval_period": (\d+)', job_text).group(1))


CONFIGS = [TESTS_DATA / "tiny.yaml", REPO / "configs" / "demo.yaml"]


@pytest.mark.parametrize("configfile", CONFIGS, ids=lambda path: path.stem)
def test_every_rule_lists_exactly_the_modules_its_job_can_import(configfile: Path) -> None:
    checked = set()
    for job in planned_jobs(configfile):
        code = {path for path in job["inputs"] if path.startswith((f"{PACKAGE}/", "scripts/"))}
        script = re.search(r"python (scripts/\w+\.py)", job["text"])
        if script is None:
            assert not code, f"rule {job['rule']} runs no script of ours but lists {code}"
            continue
        excludes = set(BY_HAND_ONLY)
        if job["rule"] == "train" and not eval_period(job["text"]):
            excludes.add(EVALUATION_HOOK)
        expected = expected_closure(REPO / script.group(1), excludes) | {script.group(1)}
        assert code == expected, (
            f"rule {job['rule']}: missing {sorted(expected - code)}, "
            f"extra {sorted(code - expected)}"
        )
        checked.add(job["rule"])
    assert {"train", "predict", "evaluate", "report", "compare", "validate"} <= checked


def test_the_image_rules_list_the_module_they_call() -> None:
    """build_image/describe_image run workflow/images.py in Snakemake's Python; checked on
    the Snakefile's text, since they are planned only with --use-singularity."""
    rules = (REPO / "rules" / "container.smk").read_text()
    helpers = (REPO / "rules" / "helpers" / "container.smk").read_text()
    assert rules.count("code=ancient(module_inputs(workflow.basedir, IMAGES_MODULE))") == 2
    assert f'IMAGES_MODULE = "{RUN_MODULES["build_image"]}"' in helpers


def test_a_new_module_is_an_input_without_listing_it(tmp_path: Path) -> None:
    """The closure follows imports: a module added to the package is found, at any depth,
    also when it is imported inside a function."""
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "new.py").write_text("from . import deeper\n")
    (package / "sub" / "deeper.py").write_text("import os\n")
    (package / "unused.py").write_text("")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "s.py").write_text(
        "def main():\n    from maskrcnn_pipeline.sub import new\n"
    )
    assert code_inputs(tmp_path, "scripts/s.py") == [
        "scripts/s.py",
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/sub/__init__.py",
        f"{PACKAGE}/sub/deeper.py",
        f"{PACKAGE}/sub/new.py",
    ]
    without = code_inputs(tmp_path, "scripts/s.py", without={f"{PACKAGE}.sub.new"})
    assert without == ["scripts/s.py", f"{PACKAGE}/__init__.py", f"{PACKAGE}/sub/__init__.py"]


def test_a_rule_job_never_imports_the_by_hand_modules(tmp_path: Path) -> None:
    """What BY_HAND_ONLY claims: with --settings (what every rule passes) the settings
    resolution imports no config validation."""
    probe = (
        "import argparse, sys\n"
        "from maskrcnn_pipeline.workflow.settings_args import resolve_settings\n"
        "args = argparse.Namespace(\n"
        "    settings='{\"a\": 1}', operational='{}', config=None, run=None\n"
        ")\n"
        "assert resolve_settings(args, kind='train') == {'a': 1}\n"
        f"loaded = sorted(set(sys.modules) & {set(BY_HAND_ONLY)!r})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([str(BIN / "python"), "-c", probe], cwd=REPO, env=tool_env(), check=True)


def test_the_snakefile_never_imports_torch(tmp_path: Path) -> None:
    """A torch that refuses to import, first on the path: parsing and planning the workflow
    (both configs) must not need it."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(
        "raise ImportError('torch imported at parse time')\n"
    )
    env = tool_env()
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    for configfile in CONFIGS:
        result = subprocess.run(
            [str(BIN / "snakemake"), "-n", "--forceall", "--configfile", str(configfile)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-2000:]


def test_the_workflow_package_never_imports_torch() -> None:
    modules = sorted(
        f"{PACKAGE}.workflow.{path.stem}"
        for path in (REPO / PACKAGE / "workflow").glob("*.py")
        if path.stem != "__init__"
    )
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([str(BIN / "python"), "-c", probe], cwd=REPO, env=tool_env(), check=True)


#: Layers from the bottom up: a module may import its own layer and the ones below, never
#: one above (DESIGN: scripts -> stage packages -> small shared pieces).
LAYERS = [
    {"errors", "fileio", "cli", "provenance", "metrics_log", "names"},
    {"data"},
    {"model"},
    {"evaluation"},
    {"inference"},
    {"train"},
    {"report"},
    {"nvidia"},
    {"workflow"},
]


def layer_of(module: str) -> int:
    part = module.split(".")[1]
    return next(index for index, names in enumerate(LAYERS) if part in names)


def project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.startswith(f"{PACKAGE}.")}
    return found


def test_no_import_runs_backwards() -> None:
    backwards = []
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if module.count(".") < 1 or (path.name == "__init__.py" and module == PACKAGE):
            continue
        for imported in project_imports(path):
            if layer_of(imported) > layer_of(module):
                backwards.append(f"{module} imports {imported}")
    assert not backwards, "\n".join(backwards)


def test_the_package_top_level_holds_only_the_shared_pieces() -> None:
    top = {path.stem for path in (REPO / PACKAGE).glob("*.py")} - {"__init__"}
    folders = {path.name for path in (REPO / PACKAGE).iterdir() if (path / "__init__.py").exists()}
    assert top == LAYERS[0]
    assert folders == set().union(*LAYERS[1:])
