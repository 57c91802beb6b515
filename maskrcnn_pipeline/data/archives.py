"""Unpack zip and tar(.gz) archives safely and atomically.

A downloaded archive is untrusted input: a member named ``/etc/x`` or ``../../x``, or a link
pointing outside the destination, would write anywhere the job may write ("zip-slip"). Every
member is checked before it is written, and the first offending one is named in the error.

- Links are judged by where they really lead, not by their text: a chain such as ``s -> .``,
  ``s/s2 -> .``, ``s/s2/l -> ../..`` looks harmless member by member but leads out. Zip
  archives may hold no link at all (COCO's zips have none, and zip tools disagree on what a
  link is). Tar members are resolved through the links the archive itself created so far
  (:func:`resolve_member`, pure path arithmetic that no length limit can cut short) and must
  stay inside; they then go through tarfile's ``data`` filter too, whose refusals are
  reported the same way. That filter alone is not enough on Pythons without the June 2025
  tarfile fixes (CVE-2025-4517 and its family: 3.9.23, 3.10.18, 3.11.13, 3.12.11, 3.13.4):
  there it resolves links with ``os.path.realpath``, which gives up silently on paths longer
  than PATH_MAX, so a crafted archive escapes.
- Size: the declared sizes are summed and checked against the destination's free space
  before anything is written (zip: all members up front; tar, whose sizes are only known
  while its compressed stream is read: before each member). While extracting, the bytes
  written are counted and a member that yields more than it declared stops the unpacking,
  so an archive that lies about its sizes cannot fill the disk either.

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
import zlib
from dataclasses import dataclass
from pathlib import Path

from maskrcnn_pipeline.errors import PipelineError

log = logging.getLogger(__name__)

#: Links followed while resolving one member's path before it counts as a loop (Linux: 40).
MAX_LINK_HOPS = 40
_COPY_CHUNK = 1 << 20


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
        free = shutil.disk_usage(dest).free
        if zipfile.is_zipfile(archive):
            members, size = _extract_zip(archive, tmp, free)
        elif tarfile.is_tarfile(archive):
            members, size = _extract_tar(archive, tmp, free)
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


def resolve_member(path: str, links: dict[str, str], *, follow_last: bool = True) -> str | None:
    """Where ``path`` (relative to the archive root) really is, following ``links``.

    ``links`` maps the real location of each symlink the archive created ('/'-joined, no
    link in it) to its target text, relative to the link's folder as the OS reads it. The
    result is the real location, '' for the root itself, or None when the path leaves the
    root at any step (an absolute link target counts as leaving). ``follow_last=False``
    stops at a final component that is a link, as creating a link over it does. Loops, and
    chains longer than MAX_LINK_HOPS, raise ValueError.
    """
    pending = _normal(path).split("/")[::-1]  # a stack: next component last
    done: list[str] = []  # the real path so far; never holds a link
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        target = links.get("/".join([*done, part]))
        if target is None or not (pending or follow_last):
            done.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise ValueError(f"more than {MAX_LINK_HOPS} links on the way (a loop?)")
        if _is_absolute(target):
            return None
        pending.extend(_normal(target).split("/")[::-1])
    return "/".join(done)


def _check_space(archive: Path, declared: int, free: int, member: str | None = None) -> None:
    """Refuse, before writing, an archive whose declared sizes exceed the free space."""
    if declared <= free:
        return
    which = f"its members up to {member!r} declare" if member else "its members declare"
    raise PipelineError(
        f"{archive}: {which} {declared} bytes ({_size(declared)}) uncompressed, more than the "
        f"{free} bytes ({_size(free)}) free where it unpacks; free some space or unpack it "
        "elsewhere (a small archive declaring a huge size is a zip bomb: get it from a "
        "trusted source)"
    )


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _extract_zip(archive: Path, dest: Path, free: int) -> tuple[int, int]:
    """Check every member (names, no links, total size), then copy each, counting bytes."""
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            reason = unsafe_reason(info.filename)
            if reason is None and stat.S_ISLNK(info.external_attr >> 16):
                with zf.open(info) as data:  # a link's data is its target: show its start
                    target = data.read(200).decode("utf-8", "replace")
                reason = (
                    f"is a link to {target!r}; zip archives may hold no links (COCO data has "
                    "none, and a chain of them can lead outside the destination)"
                )
            if reason:
                raise _refuse(archive, info.filename, reason)
        declared = sum(info.file_size for info in infos)
        _check_space(archive, declared, free)
        for info in infos:
            try:
                _copy_zip_member(zf, info, dest)
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
                raise _broken(archive, info.filename, exc) from exc
            except OSError as exc:
                raise _cannot_write(archive, info.filename, dest, exc) from exc
        return len(infos), declared


def _copy_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Write one member, stopping as soon as it yields more bytes than it declares."""
    path = dest / info.filename
    if info.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as source, open(path, "wb") as target:
        while chunk := source.read(min(_COPY_CHUNK, info.file_size - written + 1)):
            written += len(chunk)
            if written > info.file_size:
                raise zipfile.BadZipFile(
                    f"it holds more than the {info.file_size} bytes it declares"
                )
            target.write(chunk)


def _extract_tar(archive: Path, dest: Path, free: int) -> tuple[int, int]:
    """One pass over the (possibly compressed) stream: check each member, then extract it."""
    members = size = 0
    links: dict[str, str] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            where = _check_tar_member(archive, member, links)
            size += member.size if member.isreg() else 0
            _check_space(archive, size, free, member.name)
            try:
                tar.extract(member, dest, filter="data")
            except tarfile.FilterError as exc:
                raise _refuse(archive, member.name, f"is refused by tarfile ({exc})") from exc
            except tarfile.TarError as exc:
                raise _broken(archive, member.name, exc) from exc
            except OSError as exc:
                raise _cannot_write(archive, member.name, dest, exc) from exc
            _check_unpacked(archive, member, where, dest, links)
            members += 1
    return members, size


def _check_tar_member(archive: Path, member: tarfile.TarInfo, links: dict[str, str]) -> str:
    """Refuse a member that leads outside, through its name or links; return its real place.

    A symlink is placed at its path (an existing entry there is replaced) and its target is
    resolved from its real folder; a hard link's target, relative to the root, must be a
    file already inside, not a link (tarfile falls back to copying the link it points to,
    which would then resolve from another folder). Everything else is written through
    whatever its path resolves to.
    """
    name = member.name
    link = member.linkname if member.issym() or member.islnk() else None
    reason = unsafe_reason(name, link, hardlink=member.islnk())
    if reason:
        raise _refuse(archive, name, reason)
    try:
        where = resolve_member(name, links, follow_last=not (member.issym() or member.islnk()))
        if where is None:
            raise _refuse(archive, name, "leads outside the destination through a link")
        if member.issym():
            target = resolve_member(posixpath.join(posixpath.dirname(where), link), links)
        elif member.islnk():
            if resolve_member(link, links, follow_last=False) in links:
                raise _refuse(archive, name, f"is a hard link to the link {link!r}")
            target = resolve_member(link, links)
        else:
            return where
    except ValueError as exc:
        raise _refuse(archive, name, f"cannot be resolved: {exc}") from None
    if target is None:
        raise _refuse(archive, name, f"is a link to {link!r}, which leads outside the destination")
    return where


def _check_unpacked(
    archive: Path, member: tarfile.TarInfo, where: str, dest: Path, links: dict[str, str]
) -> None:
    """Keep ``links`` equal to the links on disk, and check a new link's target as written.

    The disk is what the OS will follow: tarfile may rewrite a link's target (the fixed data
    filter normalizes it) or fall back to a copy where it cannot make a link, so a link is
    read back rather than taken from the header, and a member that did not unpack as the
    kind it declares (or was written through a link) is refused. The entry is looked up by
    the member's name, as tarfile wrote it: its real path may be longer than PATH_MAX.
    """
    path = dest / member.name
    if os.path.islink(path) != member.issym():
        raise _refuse(
            archive,
            member.name,
            "did not unpack as the kind of entry it declares (or was written through a link)",
        )
    if not member.issym():
        return
    written = os.readlink(path)
    links[where] = written
    try:
        target = resolve_member(posixpath.join(posixpath.dirname(where), written), links)
    except ValueError as exc:
        raise _refuse(archive, member.name, f"cannot be resolved: {exc}") from None
    if target is None or _is_absolute(written):
        raise _refuse(
            archive, member.name, f"is a link to {written!r}, which leads outside the destination"
        )


def _broken(archive: Path, member: str, exc: BaseException) -> PipelineError:
    return PipelineError(
        f"{archive}: member {member!r} is corrupt ({exc}); refusing the archive. Delete it and "
        "fetch it again (its checksum in the config may be wrong, or its sizes lie)"
    )


def _cannot_write(archive: Path, member: str, dest: Path, exc: OSError) -> PipelineError:
    return PipelineError(
        f"{archive}: cannot write member {member!r} under {dest} ({exc.strerror or exc}); "
        "nothing was put in place. Free some space (or fix the folder's permissions) and run "
        "again"
    )


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
