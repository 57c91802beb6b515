"""provenance.json: what produced a result, so a number in a report can be traced back.

Records the git commit (and whether the tree was dirty), the settings of the step, package
versions, the container image when running inside one, checksums of the input files and the
hardware. Only cheap facts: dataset image folders are not hashed (19 GB for COCO); their
annotation files and the download checksums are.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
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
    """The Apptainer image a job runs in (Apptainer sets these variables inside a container)."""
    return {
        "image": os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"),
        "digest": os.environ.get("MASKRCNN_IMAGE_SHA256"),
    }


def hardware(device: Any = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
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
