"""provenance.json: what produced a result, so a number in a report can be traced back.

Records the git commit (and whether the tree was dirty), the settings of the step, package
versions, the container image when running inside one, checksums of the input files and the
hardware. Only cheap facts: dataset image folders are not hashed (19 GB for COCO); their
annotation files and the download checksums are.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.fileio import write_json_atomic

PACKAGES = ("torch", "torchvision", "numpy", "pycocotools", "faster-coco-eval", "snakemake")
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The environment variable naming the image's JSON record (set by rules/common.smk).
IMAGE_INFO_ENV = "MASKRCNN_IMAGE_INFO"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def container_info() -> dict[str, str | None]:
    """The Apptainer image a job runs in; all null outside a container.

    Apptainer sets APPTAINER_CONTAINER inside a container. The digest comes from the JSON
    record the build rule wrote beside the image (the workflow passes its path in
    MASKRCNN_IMAGE_INFO), since hashing a multi-GB image in every job would take minutes.
    A missing or unreadable record is noted rather than raised: it must not fail a training
    at its very end.
    """
    image = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    info: dict[str, str | None] = {"image": image, "digest": None, "base": None}
    record_path = os.environ.get(IMAGE_INFO_ENV)
    if image and record_path:
        try:
            record = json.loads(Path(record_path).read_text(encoding="utf-8"))
            info["digest"] = f"sha256:{record['sha256']}"
            info["base"] = record.get("base")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            info["record_error"] = f"{record_path}: {exc!r}"
    return info


def hardware(device: Any = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        # What the scheduler gave the job (Slurm sets both; null when run by hand).
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    return info


def write_provenance(
    path: str | os.PathLike[str],
    *,
    settings: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike[str]] = (),
    device: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    record = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "settings": dict(settings),
        "packages": package_versions(),
        "container": container_info(),
        "inputs": {str(p): {"sha256": sha256_file(p)} for p in inputs},
        "hardware": hardware(device),
        **(extra or {}),
    }
    write_json_atomic(path, record)
