"""Safe, atomic unpacking: layouts, merging, zip-slip archives refused by member name or by
where their links really lead, and archives too big for the disk (or lying about it)."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from maskrcnn_pipeline.data import archives
from maskrcnn_pipeline.data.archives import resolve_member, unpack, unsafe_reason
from maskrcnn_pipeline.errors import PipelineError
from tests.support.workflow import run_script


def make_zip(
    path: Path,
    members: dict[str, bytes],
    symlinks: dict[str, str] | None = None,
    *,
    order: list[str] | None = None,
) -> Path:
    """A zip as Info-ZIP writes it: a symlink is a member whose data is the target text and
    whose external attributes carry S_IFLNK in the high 16 bits (made on Unix).
    ``order``: the member names in archive order (default: files, then links)."""
    links = symlinks or {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in order or [*members, *links]:
            if name in links:
                info = zipfile.ZipInfo(name)
                info.create_system = 3  # Unix
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, links[name])
            else:
                zf.writestr(name, members[name])
    return path


def make_tar(
    path: Path, members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None
) -> Path:
    """``links``: name -> (tar type, link target)."""
    return write_tar(
        path,
        [(name, tarfile.REGTYPE, "", data) for name, data in members.items()]
        + [(name, kind, target, b"") for name, (kind, target) in (links or {}).items()],
    )


def write_tar(path: Path, entries: list[tuple[str, bytes, str, bytes]]) -> Path:
    """A tar.gz of (name, tar type, link target, data) entries in that order."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, target, data in entries:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, target, len(data)
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_zip_unpacks_into_nvidia_layout(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "val2017.zip", {"val2017/1.jpg": b"a", "val2017/2.jpg": b"b"})
    dest = tmp_path / "coco2017"
    result = unpack(archive, dest)
    assert tree(dest) == ["val2017", "val2017/1.jpg", "val2017/2.jpg"]
    assert (result.entries, result.members, result.bytes) == (["val2017"], 2, 2)


def test_two_archives_fill_one_folder(tmp_path: Path) -> None:
    """annotations_trainval2017.zip and Detectron's minival tgz both fill annotations/."""
    dest = tmp_path / "coco2017"
    unpack(make_zip(tmp_path / "a.zip", {"annotations/instances_val2017.json": b"{}"}), dest)
    minival = make_tar(tmp_path / "m.tgz", {"annotations/instances_minival2014.json": b"{}"})
    unpack(minival, dest)
    assert tree(dest) == [
        "annotations",
        "annotations/instances_minival2014.json",
        "annotations/instances_val2017.json",
    ]


def test_tar_keeps_links_inside_the_archive(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "a.tar.gz",
        {"data/real.txt": b"x"},
        {
            "data/alias.txt": (tarfile.SYMTYPE, "real.txt"),
            "data/hard.txt": (tarfile.LNKTYPE, "data/real.txt"),
        },
    )
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "alias.txt").read_bytes() == b"x"
    assert (tmp_path / "out" / "data" / "hard.txt").read_bytes() == b"x"


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil.txt", "has a '..' path component"),
        ("train2017/../../evil.txt", "has a '..' path component"),
        ("..\\evil.txt", "has a '..' path component"),
        ("/etc/evil.txt", "has an absolute path"),
        ("C:/evil.txt", "has an absolute path"),
    ],
)
def test_zip_slip_names_are_refused(tmp_path: Path, member: str, reason: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"ok/1.jpg": b"a", member: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(PipelineError) as info:
        unpack(archive, dest)
    assert f"member {member!r} {reason}" in str(info.value)
    assert "zip-slip" in str(info.value)
    assert tree(dest) == []  # nothing placed, no temporary folder left
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize(
    ("kind", "target", "reason"),
    [
        (tarfile.SYMTYPE, "../../outside", "is a link to '../../outside', outside the destination"),
        (tarfile.SYMTYPE, "/etc/passwd", "is a link to the absolute path '/etc/passwd'"),
        (tarfile.LNKTYPE, "../secret", "is a link to '../secret', outside the destination"),
    ],
)
def test_tar_links_escaping_are_refused(tmp_path: Path, kind: bytes, target: str, reason: str):
    archive = make_tar(tmp_path / "evil.tgz", {"a/ok.txt": b"x"}, {"a/link": (kind, target)})
    with pytest.raises(PipelineError, match=re.escape(f"member 'a/link' {reason}")):
        unpack(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == []


def test_zip_symlink_escaping_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"a/ok.txt": b"x"}, {"a/link": "../../etc"})
    with pytest.raises(PipelineError, match=re.escape("member 'a/link' is a link to '../../etc'")):
        unpack(archive, tmp_path / "out")


def test_zip_symlink_chain_cannot_overwrite_a_file_outside(tmp_path: Path) -> None:
    """Issue 12: each link looks harmless by its text, together they lead three folders up
    (the unpacking folder sits in the destination) and the file lands in the repository."""
    repo = tmp_path / "repo"
    script = repo / "scripts" / "evaluate.py"
    script.parent.mkdir(parents=True)
    script.write_text("original\n")
    links = {"s": ".", "s/s2": ".", "s/s2/s3": ".", "s/s2/s3/l": "../../.."}
    evil = "s/s2/s3/l/scripts/evaluate.py"
    archive = make_zip(
        tmp_path / "evil.zip", {evil: b"print('owned')\n"}, links, order=[*links, evil]
    )
    dest = repo / "data" / "coco2017"
    with pytest.raises(PipelineError) as info:
        unpack(archive, dest)
    assert "member 's' is a link to '.'; zip archives may hold no links" in str(info.value)
    assert script.read_text() == "original\n"
    assert tree(dest) == []


def test_tar_symlink_chain_is_resolved(tmp_path: Path) -> None:
    chain = [("s", tarfile.SYMTYPE, ".", b""), ("s/s2", tarfile.SYMTYPE, ".", b"")]
    escape = [
        ("s/s2/l", tarfile.SYMTYPE, "../..", b""),
        ("s/s2/l/x.txt", tarfile.REGTYPE, "", b"x"),
    ]
    archive = write_tar(tmp_path / "evil.tgz", chain + escape)
    dest = tmp_path / "a" / "out"
    with pytest.raises(PipelineError, match=r"member 's/s2/l' is a link to '\.\./\.\.'"):
        unpack(archive, dest)
    assert not (tmp_path / "a" / "x.txt").exists() and not (tmp_path / "x.txt").exists()
    ok = write_tar(tmp_path / "ok.tgz", [*chain, ("s/s2/l", tarfile.SYMTYPE, "s", b"")])
    unpack(ok, tmp_path / "ok")
    assert os.readlink(tmp_path / "ok" / "s" / "s2" / "l") == "s"


def test_tar_link_chain_longer_than_path_max_cannot_escape(tmp_path: Path) -> None:
    """CVE-2025-4517: links that expand past PATH_MAX, where os.path.realpath (and with it the
    data filter of Pythons before 3.11.13 / 3.12.11 / 3.13.4) stops resolving and lets the
    last link out. Our own resolution has no length limit."""
    dest = tmp_path / "dest"
    archive = tmp_path / "evil.tar.gz"
    unpacking = len(f"{dest}/.{archive.name}.") + len("12345678.unpacking")  # mkdtemp's name
    steps = "abcdefghijklmnop"
    folder = "d" * ((os.pathconf(tmp_path, "PC_PATH_MAX") - unpacking - 1) // (len(steps) + 1))
    entries, path = [], ""
    for step in steps:  # a -> d, d/b -> d (= d/d), ...: short names for a very long path
        entries += [
            (f"{path}{folder}", tarfile.DIRTYPE, "", b""),
            (f"{path}{step}", tarfile.SYMTYPE, folder, b""),
        ]
        path += f"{folder}/"
    last = "/".join(steps) + "/" + "l" * 254
    entries += [
        (last, tarfile.SYMTYPE, "/".join([".."] * len(steps)), b""),  # back to the root
        ("escape", tarfile.SYMTYPE, f"{last}/../..", b""),  # root/.. : the destination's parent
        ("escape/outside.txt", tarfile.REGTYPE, "", b"escaped"),
    ]
    write_tar(archive, entries)
    with pytest.raises(PipelineError, match=r"member 'escape' is a link to .*leads outside"):
        unpack(archive, dest)
    assert sorted(os.listdir(tmp_path)) == ["dest", "evil.tar.gz"]


def test_tar_hard_link_to_a_link_is_refused(tmp_path: Path) -> None:
    entries = [
        ("deep/dir/x", tarfile.SYMTYPE, "../..", b""),
        ("h", tarfile.LNKTYPE, "deep/dir/x", b""),
    ]
    with pytest.raises(PipelineError, match="member 'h' is a hard link to the link 'deep/dir/x'"):
        unpack(write_tar(tmp_path / "evil.tgz", entries), tmp_path / "out")


def test_resolve_member_follows_the_archive_links() -> None:
    links = {"s": ".", "a/l": "../b"}
    assert resolve_member("s/s/s/x", links) == "x"
    assert resolve_member("a/l/c", links) == "b/c"
    assert resolve_member("a/l", links, follow_last=False) == "a/l"
    assert resolve_member("s/..", links) is None
    assert resolve_member("a/l/../..", links) is None
    assert resolve_member("x", {"x": "/etc"}) is None
    with pytest.raises(ValueError, match="loop"):
        resolve_member("x/y", {"x": "x"})


# --- size ---------------------------------------------------------------------------------


def free_space(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    usage = shutil.disk_usage(".")
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda _: usage._replace(free=free))


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_archive_larger_than_the_free_space_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A 1 MiB member of zeros compresses to about a kilobyte; 100 KB are free."""
    members = {"val2017/zeros.bin": bytes(2**20), "val2017/1.jpg": b"a"}
    make = make_zip if kind == "zip" else make_tar
    archive = make(tmp_path / f"bomb.{kind}", members)
    assert archive.stat().st_size < 10_000
    free_space(monkeypatch, 100_000)
    with pytest.raises(PipelineError) as info:
        unpack(archive, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{archive}: ")
    assert re.search(r"declare 104857[67] bytes \(1\.0 MiB\) uncompressed", message)
    assert "more than the 100000 bytes (97.7 KiB) free" in message
    assert tree(tmp_path / "out") == []


def lie_about_size(archive: Path, name: str, size: int) -> None:
    """Rewrite a member's uncompressed size in its local and central headers, as a zip bomb
    that hides its size from a pre-check would."""
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        while at >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            length = struct.unpack_from("<H", data, at + offset + 4)[0]
            if data[name_at : name_at + length] == name.encode():
                struct.pack_into("<I", data, at + offset, size)
            at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))


def test_zip_member_lying_about_its_size_stops_the_unpacking(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", {"ok.txt": b"ok", "zeros.bin": bytes(2**20)})
    lie_about_size(archive, "zeros.bin", 1000)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("zeros.bin").file_size == 1000
    with pytest.raises(PipelineError, match=r"member 'zeros\.bin' is corrupt") as info:
        unpack(archive, tmp_path / "out")
    assert "Traceback" not in str(info.value)
    assert tree(tmp_path / "out") == []


def test_member_yielding_more_than_declared_is_cut_off(tmp_path: Path) -> None:
    """The byte count of our own copy loop, whatever the zip library lets through."""

    class Generous:
        def open(self, info: zipfile.ZipInfo) -> io.BytesIO:
            return io.BytesIO(bytes(10 * info.file_size))

    info = zipfile.ZipInfo("zeros.bin")
    info.file_size = 1000
    with pytest.raises(zipfile.BadZipFile, match="more than the 1000 bytes it declares"):
        archives._copy_zip_member(Generous(), info, tmp_path)  # type: ignore[arg-type]
    assert (tmp_path / "zeros.bin").stat().st_size <= 1000


def test_disk_full_while_unpacking_names_the_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(archives, "_copy_zip_member", full)
    archive = make_zip(tmp_path / "val2017.zip", {"val2017/1.jpg": b"a"})
    with pytest.raises(PipelineError, match=r"cannot write member 'val2017/1\.jpg' under .*space"):
        unpack(archive, tmp_path / "out")
    assert tree(tmp_path / "out") == []


def test_tar_special_files_are_refused_by_the_data_filter(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "dev.tgz", {}, {"dev/null": (tarfile.CHRTYPE, "")})
    with pytest.raises(PipelineError, match="member 'dev/null' is refused by tarfile"):
        unpack(archive, tmp_path / "out")


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(b"<html>mirror error page</html>")
    with pytest.raises(PipelineError, match="not a zip or tar archive"):
        unpack(path, tmp_path / "out")


def test_never_writes_through_an_existing_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "val2017").symlink_to(elsewhere)
    with pytest.raises(PipelineError, match="is a link"):
        unpack(make_zip(tmp_path / "v.zip", {"val2017/1.jpg": b"a"}), dest)
    assert list(elsewhere.iterdir()) == []


def test_unsafe_reason_accepts_ordinary_members() -> None:
    assert unsafe_reason("train2017/000000000009.jpg") is None
    assert unsafe_reason("a/./b/../c.txt") is None
    assert unsafe_reason("a/b/link", "../c") is None
    assert unsafe_reason("a/link", "a/b", hardlink=True) is None


def test_cli(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "val2017.zip", {"val2017/1.jpg": b"a"})
    manifest = tmp_path / "out" / ".unpacked" / "val2017.zip.json"
    ok = run_script("unpack.py", [str(archive), str(tmp_path / "out"), "--manifest", str(manifest)])
    assert ok.returncode == 0, ok.stderr
    assert json.loads(manifest.read_text())["entries"] == ["val2017"]
    evil = make_zip(tmp_path / "evil.zip", {"../x": b""})
    bad = run_script("unpack.py", [str(evil), str(tmp_path / "out2")])
    assert bad.returncode == 2 and "member '../x'" in bad.stderr and "Traceback" not in bad.stderr
