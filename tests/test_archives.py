"""Safe, atomic unpacking: layouts, merging, and zip-slip archives refused by member name."""

from __future__ import annotations

import io
import json
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from maskrcnn_pipeline.data.archives import unpack, unsafe_reason
from maskrcnn_pipeline.errors import PipelineError
from tests.support.workflow import run_script


def make_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def make_tar(
    path: Path, members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None
) -> Path:
    """``links``: name -> (tar type, link target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
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
