#!/usr/bin/env python3
"""A stand-in for the ``apptainer`` command in tests: NOT Apptainer, and no image.

It checks how the workflow calls Apptainer (our wiring), never what an image contains. Each
call is appended as one JSON line ``{"argv": [...], "cwd": ...}`` to $APPTAINER_DOUBLE_LOG,
then it behaves just enough like Apptainer for Snakemake and the workflow:

- ``--version`` prints a version Snakemake accepts;
- ``build [--fakeroot] [--build-arg K=V]... TARGET DEFINITION`` writes a small placeholder
  file at TARGET (its bytes name the definition and the build arguments);
- ``exec [options] IMAGE COMMAND...`` runs COMMAND on the host, in --pwd if given, with HOME
  set to --home and APPTAINER_CONTAINER to the image's absolute path, as Apptainer sets them.
  Binds are not made (there is no container); they reach COMMAND as APPTAINER_DOUBLE_BINDS
  (``src:dst[:opts]`` joined by commas), so a double of a program can map paths itself.

Unknown subcommands or options fail loudly, so a changed call cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

VERSION = "apptainer version 1.4.5"
GLOBAL_FLAGS = {"-q", "--quiet", "-s", "--silent", "-d", "--debug", "-v", "--verbose"}
EXEC_VALUE_OPTIONS = {"--home", "-H", "--bind", "-B", "--pwd", "--env", "--env-file"}
EXEC_FLAGS = {"--nv", "--cleanenv", "-e", "--writable-tmpfs", "--no-home"}
BUILD_FLAGS = {"--fakeroot", "-f", "--force", "--notest"}


def record(argv: list[str]) -> None:
    log = os.environ.get("APPTAINER_DOUBLE_LOG")
    if log:
        line = json.dumps({"argv": argv, "cwd": os.getcwd()}) + "\n"
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(line)


def fail(message: str) -> int:
    print(f"apptainer test double: {message}", file=sys.stderr)
    return 255


def build(args: list[str]) -> int:
    build_args: list[str] = []
    positional: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--build-arg":
            build_args.append(next(rest))
        elif arg in BUILD_FLAGS:
            continue
        elif arg.startswith("-"):
            return fail(f"build: unknown option {arg}")
        else:
            positional.append(arg)
    if len(positional) != 2:
        return fail(f"build: expected TARGET DEFINITION, got {positional}")
    target, definition = map(Path, positional)
    if not definition.is_file():
        return fail(f"build: no definition file {definition}")
    if target.exists():
        return fail(f"build: {target} exists (apptainer would ask before overwriting it)")
    target.write_text(f"placeholder image from {definition} with {' '.join(build_args)}\n")
    print(f"INFO:    Build complete: {target}")
    return 0


def exec_(args: list[str]) -> int:
    env = dict(os.environ)
    workdir = None
    binds: list[str] = []
    index = 0
    while index < len(args) and args[index].startswith("-"):
        option = args[index]
        if option in EXEC_VALUE_OPTIONS:
            value = args[index + 1]
            if option in ("--home", "-H"):
                env["HOME"] = value.split(":", 1)[0]
            elif option == "--pwd":
                workdir = value
            elif option in ("--bind", "-B"):
                binds.extend(value.split(","))
            index += 2
        elif option in EXEC_FLAGS:
            index += 1
        else:
            return fail(f"exec: unknown option {option}")
    if len(args) < index + 2:
        return fail("exec: expected IMAGE COMMAND...")
    image, command = args[index], args[index + 1 :]
    if not Path(image).is_file():
        return fail(f"exec: no image {image}")
    env["APPTAINER_CONTAINER"] = str(Path(image).resolve())
    env["APPTAINER_NAME"] = Path(image).name
    env["APPTAINER_DOUBLE_BINDS"] = ",".join(binds)
    if workdir:
        os.chdir(workdir)
    os.execvpe(command[0], command, env)
    return 0  # not reached


def main(argv: list[str]) -> int:
    record(argv)
    args = list(argv)
    while args and args[0] in GLOBAL_FLAGS:
        args.pop(0)
    if args in (["--version"], ["version"]):
        print(VERSION)
        return 0
    if not args:
        return fail("no subcommand")
    commands = {"build": build, "exec": exec_}
    if args[0] not in commands:
        return fail(f"unknown subcommand {args[0]}")
    return commands[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
