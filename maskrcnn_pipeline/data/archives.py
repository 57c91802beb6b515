"""Unpack zip and tar(.gz) archives safely and atomically.

A downloaded archive is untrusted input: a member named ``/etc/x`` or ``../../x``, or a link
pointing outside the destination, would write anywhere the job may write ("zip-slip"). Every
member is checked before it is written, and the first offending one is named in the error.
Tar members additionally go through tarfile's ``data`` extraction filter (no device files,
no links outside, sane permissions), whose refusals are reported the same way.

Extraction happens in a temporary folder inside the destination and its top-level entries are
then renamed into place, so a crash leaves either nothing or whole entries behind, never a
half-written one under its final name. An entry that already exists as a folder is merged
into file by file: two archives may fill the same folder, as COCO's annotation archives
(2017 annotations, Detectron's minival) both fill ``annotations/``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unpacked:
    """What an archive put in place: its top-level entries, member count and bytes."""

    archive: str
    dest: str
    entries: list[str]
    members: int
    bytes: int


def unpack(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Unpacked:
    """Extract ``archive`` (zip, tar, tar.gz, tgz, ...) into ``dest`` and return what it placed."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise PipelineError(f"{archive}: archive not found")
    dest.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".unpacking", dir=dest))
    try:
        if zipfile.is_zipfile(archive):
            members, size = _extract_zip(archive, tmp)
        elif tarfile.is_tarfile(archive):
            members, size = _extract_tar(archive, tmp)
        else:
            raise PipelineError(
                f"{archive}: not a zip or tar archive; check the file (or set its unpack "
                "option to a download that is an archive)"
            )
        entries = sorted(os.listdir(tmp))
        for name in entries:
            _move_into_place(tmp / name, dest / name, archive)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "%s: %d members (%.1f MiB) unpacked into %s in %.0f s: %s",
        archive,
        members,
        size / 2**20,
        dest,
        time.monotonic() - start,
        ", ".join(entries),
    )
    return Unpacked(str(archive), str(dest), entries, members, size)


def unsafe_reason(name: str, link: str | None = None, *, hardlink: bool = False) -> str | None:
    """Why a member (and its link target) would escape the destination; None if it stays in.

    Names are archive paths ('/'-separated; backslashes count as separators too, as Windows
    tools write them). A symlink's target is relative to the member's folder, a hard link's
    to the archive root.
    """
    if _is_absolute(name):
        return "has an absolute path"
    if _escapes(name):
        return "has a '..' path component"
    if link is None:
        return None
    if _is_absolute(link):
        return f"is a link to the absolute path {link!r}"
    base = "" if hardlink else posixpath.dirname(_normal(name))
    if _escapes(posixpath.join(base, _normal(link))):
        return f"is a link to {link!r}, outside the destination"
    return None


def _normal(path: str) -> str:
    return path.replace("\\", "/")


def _is_absolute(path: str) -> bool:
    path = _normal(path)
    return path.startswith("/") or (len(path) > 1 and path[1] == ":")  # /x, C:x, C:/x


def _escapes(path: str) -> bool:
    """True when the path, resolved lexically from the root, leaves it at some point."""
    depth = 0
    for part in _normal(path).split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _refuse(archive: Path, member: str, reason: str) -> PipelineError:
    return PipelineError(
        f"{archive}: member {member!r} {reason}; refusing to unpack the archive (it could write "
        "outside its destination: zip-slip). Get the archive from a trusted source"
    )


def _extract_zip(archive: Path, dest: Path) -> tuple[int, int]:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        links = {info.filename for info in infos if stat.S_ISLNK(info.external_attr >> 16)}
        for info in infos:  # check every member before writing any
            link = zf.read(info).decode("utf-8", "replace") if info.filename in links else None
            reason = unsafe_reason(info.filename, link)
            if reason:
                raise _refuse(archive, info.filename, reason)
        for info in infos:
            if info.filename in links:
                path = dest / info.filename
                path.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(zf.read(info).decode("utf-8"), path)
            else:
                zf.extract(info, dest)
        return len(infos), sum(info.file_size for info in infos)


def _extract_tar(archive: Path, dest: Path) -> tuple[int, int]:
    """One pass over the (possibly compressed) stream: check each member, then extract it."""
    members = size = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            link = member.linkname if member.issym() or member.islnk() else None
            reason = unsafe_reason(member.name, link, hardlink=member.islnk())
            if reason:
                raise _refuse(archive, member.name, reason)
            try:
                tar.extract(member, dest, filter="data")
            except tarfile.FilterError as exc:
                raise _refuse(archive, member.name, f"is refused by tarfile ({exc})") from exc
            members, size = members + 1, size + member.size
    return members, size


def _move_into_place(source: Path, target: Path, archive: Path) -> None:
    """Rename ``source`` onto ``target``; merge into an existing folder entry by entry."""
    if target.is_symlink():
        raise PipelineError(
            f"{target}: is a link; unpacking {archive.name} would write through it. Remove the "
            "link (or unpack elsewhere)"
        )
    if not target.exists():
        os.rename(source, target)
    elif source.is_dir() and target.is_dir():
        for child in sorted(source.iterdir()):
            _move_into_place(child, target / child.name, archive)
        source.rmdir()
    elif source.is_dir() or target.is_dir():
        raise PipelineError(
            f"{target}: {archive.name} has a {'folder' if source.is_dir() else 'file'} there, "
            "but another kind of entry exists; remove it and unpack again"
        )
    else:
        os.replace(source, target)
