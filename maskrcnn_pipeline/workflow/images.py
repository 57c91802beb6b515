"""The Apptainer images the compute rules run in: build each once, and record what it is.

The workflow's ``build_image`` rule (rules/container.smk) calls :func:`build_image` to build
``containers/<name>.def`` (the pipeline's maskrcnn.def, or nvidia-maskrcnn.def for NVIDIA's
own code) into a .sif and writes a JSON record beside it: the base image and other build
arguments, the sha256 of the .sif, the apptainer version and the build time. Jobs copy that
record's digest into their provenance instead of hashing a multi-GB image each time. A
site-provided image is recorded the same way by :func:`describe_image`, without building.

No torch here: the Snakefile imports this module on every ``snakemake`` call.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import atomic_path, write_json_atomic
from maskrcnn_pipeline.provenance import sha256_file
from maskrcnn_pipeline.workflow import paths

#: Snakemake runs `apptainer` when it is on PATH, else `singularity`; so do we.
BINARIES = ("apptainer", "singularity")


def image_record_path(image: str | os.PathLike[str]) -> str:
    """results/container/<image name>.json: the record of ``image`` (a .sif path), in
    results/ also for a site-provided image that may sit in a read-only folder."""
    return paths.image_record(Path(image).stem)


def unset_variables(args: str) -> list[str]:
    """Names of ``$VARIABLES`` left in ``args``: a profile keeps an unset variable literally.

    profiles/local and profiles/slurm bind ``$MASKRCNN_DATA``; unset, Apptainer would fail
    each job with a mount error instead of naming the variable.
    """
    return re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", args)


def apptainer_binary() -> str:
    """The Apptainer command on PATH (``apptainer``, or its older name ``singularity``)."""
    for name in BINARIES:
        if shutil.which(name):
            return name
    raise PipelineError(
        "neither apptainer nor singularity is on PATH: install Apptainer (>= 1.2, which "
        "knows --build-arg), or build the image on a machine that has it and point "
        "container.image at it with container.build: false (containers/README.md)"
    )


def apptainer_version(binary: str) -> str:
    """``apptainer --version`` as printed, e.g. ``apptainer version 1.4.5``."""
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PipelineError(f"`{binary} --version` failed: {exc}") from exc
    return result.stdout.strip()


def build_command(
    binary: str,
    definition: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    base: str,
    fakeroot: bool,
    build_args: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``apptainer build`` call: the base image goes in as the definition's BASE_IMAGE,
    then any other ``build_args`` (NVIDIA's image: the source repository and commit).

    Without root, Apptainer builds need ``--fakeroot`` (user namespaces and subuid ranges set
    up by the site); as root it must not be given.
    """
    command = [binary, "build"]
    if fakeroot:
        command.append("--fakeroot")
    arguments = {"BASE_IMAGE": base, **(build_args or {})}
    for name, value in arguments.items():
        command += ["--build-arg", f"{name}={value}"]
    return [*command, str(target), str(definition)]


def build_image(
    definition: str | os.PathLike[str],
    image: str | os.PathLike[str],
    record: str | os.PathLike[str],
    *,
    base: str,
    log: str | os.PathLike[str],
    build_args: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build ``definition`` into ``image`` (atomically) and write its JSON ``record``.

    The build's output goes to ``log``. A failed build leaves no image behind, so the next
    run starts it again rather than using half an image.
    """
    binary = apptainer_binary()
    fakeroot = os.geteuid() != 0
    started = time.monotonic()
    with open(log, "a", encoding="utf-8") as out, atomic_path(image) as partial:
        partial.unlink()  # apptainer asks before overwriting: let it create the file
        command = build_command(
            binary, definition, partial, base=base, fakeroot=fakeroot, build_args=build_args
        )
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        status = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        ).returncode
        if status != 0 or not partial.is_file():
            hint = (
                " Without root, Apptainer builds need --fakeroot to be allowed for your user "
                "(ask the site), or build the image elsewhere and use it with "
                "container.build: false."
                if fakeroot
                else ""
            )
            raise PipelineError(
                f"{definition}: `{shlex.join(command)}` failed (exit {status}); its output "
                f"is in {log}.{hint}"
            )
    data = write_record(
        image,
        record,
        binary=binary,
        base=base,
        definition=definition,
        build_seconds=round(time.monotonic() - started, 1),
        build_args=build_args,
    )
    _log_record(log, data)
    return data


def describe_image(
    image: str | os.PathLike[str],
    record: str | os.PathLike[str],
    *,
    log: str | os.PathLike[str],
) -> dict[str, Any]:
    """Record a site-provided image (container.build: false); it is used as it is."""
    if not Path(image).is_file():
        raise PipelineError(
            f"container.image: {image} does not exist; give the path of the site's .sif, "
            "or set container.build: true to build it from the definition"
        )
    data = write_record(image, record, binary=apptainer_binary())
    _log_record(log, data)
    return data


def _log_record(log: str | os.PathLike[str], data: dict[str, Any]) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"{data['image']}: sha256 {data['sha256']}, {data['size_bytes']} bytes\n")


def write_record(
    image: str | os.PathLike[str],
    record: str | os.PathLike[str],
    *,
    binary: str,
    base: str | None = None,
    definition: str | os.PathLike[str] | None = None,
    build_seconds: float | None = None,
    build_args: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON beside an image: what it was made from and its sha256, read by provenance."""
    data: dict[str, Any] = {
        "image": str(image),
        "sha256": sha256_file(image),
        "size_bytes": Path(image).stat().st_size,
        "base": base,
        "definition": None if definition is None else str(definition),
        "definition_sha256": None if definition is None else sha256_file(definition),
        "apptainer_version": apptainer_version(binary),
        "built_at": (
            None if build_seconds is None else datetime.now(UTC).isoformat(timespec="seconds")
        ),
        "build_seconds": build_seconds,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if build_args:
        data["build_args"] = dict(build_args)
    write_json_atomic(record, data)
    return data


def exec_prefix(
    image: str,
    *,
    binary: str,
    args: str = "",
    home: str | None = None,
    binds: Sequence[str] = (),
) -> list[str]:
    """``apptainer exec --home <workdir> --nv <args> [--bind B]... <image>``: a command run in
    the image.

    The same call Snakemake makes for a rule with ``container:``; used where a job must start
    the image itself: a multi-node training launched by srun, which the image lacks, and
    NVIDIA's code, which needs its dataset bound at a fixed path (``binds``, per job, which
    Snakemake's --apptainer-args cannot give).
    """
    options = shlex.split(args)
    if "--nv" not in options:
        options.insert(0, "--nv")
    for bind in binds:
        options += ["--bind", bind]
    return [binary, "exec", "--home", home or os.getcwd(), *options, image]
