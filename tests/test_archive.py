"""SafeArchive: every hostile zip is refused with its reason; good ones read normally."""

import os
import stat
import zipfile

import pytest

from gpueval.errors import Rejected
from gpueval.io.archive import SafeArchive, iter_files


def make_zip(path, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members:
            if isinstance(name, zipfile.ZipInfo):
                z.writestr(name, data)
            else:
                z.writestr(name, data)
    return path


def test_good_archive_lists_reads_and_extracts(tmp_path):
    p = make_zip(tmp_path / "ok.zip", [("result/a.tiff", b"abc"), ("__MACOSX/._a", b"x"),
                                       ("result/b.tiff", b"defg")])
    with SafeArchive(p) as z:
        assert z.names() == ["result/a.tiff", "result/b.tiff"]
        assert z.read("result/b.tiff") == b"defg"
        out = z.extract_to(tmp_path / "out", ["result/a.tiff"])
    assert (out / "result/a.tiff").read_bytes() == b"abc"


@pytest.mark.parametrize("name,reason", [
    ("../evil.tiff", "path traversal"),
    ("a/../../evil", "path traversal"),
    ("/etc/passwd", "absolute path"),
    ("C:/windows/x", "absolute path"),
    ("a\\..\\b", "backslash"),
])
def test_bad_names(tmp_path, name, reason):
    p = make_zip(tmp_path / "bad.zip", [(name, b"x")])
    with pytest.raises(Rejected, match=reason):
        SafeArchive(p)


def test_symlink_member(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    p = make_zip(tmp_path / "l.zip", [(info, "/etc/passwd")])
    with pytest.raises(Rejected, match="link"):
        SafeArchive(p)


def test_duplicate_names(tmp_path):
    with pytest.warns(UserWarning):
        p = make_zip(tmp_path / "d.zip", [("a.tiff", b"1"), ("a.tiff", b"2")])
    with pytest.raises(Rejected, match="duplicate"):
        SafeArchive(p)


def test_ratio_bomb(tmp_path):
    p = make_zip(tmp_path / "b.zip", [("zeros.bin", b"\0" * (40 << 20))])
    with pytest.raises(Rejected, match="zip bomb"):
        SafeArchive(p)


def test_total_size_limit(tmp_path):
    p = make_zip(tmp_path / "t.zip", [(f"f{i}", os.urandom(1000)) for i in range(5)])
    with pytest.raises(Rejected, match="declared uncompressed size"):
        SafeArchive(p, max_total_bytes=3000)


def test_lying_header_is_caught_while_reading(tmp_path):
    p = make_zip(tmp_path / "lie.zip", [("a.bin", b"x" * 5000)], zipfile.ZIP_STORED)
    data = bytearray(p.read_bytes())
    # shrink the declared size in the central directory (uncompressed size field)
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    with SafeArchive(p) as z, pytest.raises(Rejected):
        z.read("a.bin")


def test_truncated_and_not_a_zip(tmp_path):
    p = make_zip(tmp_path / "t.zip", [("a", os.urandom(5000))])
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(Rejected, match="not a readable zip"):
        SafeArchive(p)
    (tmp_path / "n.zip").write_text("hello")
    with pytest.raises(Rejected, match="not a readable zip"):
        SafeArchive(tmp_path / "n.zip")


def test_encrypted_member_flag(tmp_path):
    p = make_zip(tmp_path / "e.zip", [("a", b"x")], zipfile.ZIP_STORED)
    data = bytearray(p.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 1  # general purpose flag bit 0: encrypted
    p.write_bytes(bytes(data))
    with pytest.raises(Rejected, match="encrypted"):
        SafeArchive(p)


def test_member_count_limit(tmp_path):
    p = make_zip(tmp_path / "m.zip", [(f"f{i}", b"") for i in range(10)])
    with pytest.raises(Rejected, match="entries"):
        SafeArchive(p, max_members=5)


def test_folder_symlink_leaving_submission(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "secret").write_text("x")
    (tmp_path / "sub" / "a.tiff").symlink_to(tmp_path / "secret")
    with pytest.raises(Rejected, match="symbolic link"):
        list(iter_files(tmp_path / "sub"))


def test_declared_entry_count_is_checked_before_parsing(tmp_path, monkeypatch):
    p = make_zip(tmp_path / "m.zip", [(f"f{i}", b"") for i in range(30)])

    def boom(*a, **k):  # the central directory must not even be parsed
        raise AssertionError("zipfile.ZipFile was called")

    monkeypatch.setattr("gpueval.io.archive.zipfile.ZipFile", boom)
    with pytest.raises(Rejected, match="30 entries, more than the limit 10"):
        SafeArchive(p, max_members=10)


def test_overlapping_and_out_of_file_members(tmp_path):
    import struct

    p = make_zip(tmp_path / "o.zip", [("a", b"x" * 100), ("b", b"y" * 100)], zipfile.ZIP_STORED)
    data = bytearray(p.read_bytes())
    second = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 1)
    data[second + 42:second + 46] = struct.pack("<I", 0)  # b's local header -> a's
    p.write_bytes(bytes(data))
    with pytest.raises(Rejected, match="overlap"):
        SafeArchive(p)


def test_nested_archives_and_name_collisions(tmp_path):
    for name in ("inner.zip", "x/data.tar.gz", "y.7z"):
        p = make_zip(tmp_path / "n.zip", [(name, b"x")])
        with pytest.raises(Rejected, match="nested archives are refused"):
            SafeArchive(p)
        assert SafeArchive(p, allow_nested=True).names() == [name]
    p = make_zip(tmp_path / "c.zip", [("Result/A.tiff", b"1"), ("result/a.tiff", b"2")])
    with pytest.raises(Rejected, match="differ only in case"):
        SafeArchive(p)
    nfd, nfc = "e\u0301.tiff", "\u00e9.tiff"
    p = make_zip(tmp_path / "u.zip", [(nfd, b"1"), (nfc, b"2")])
    with pytest.raises(Rejected, match="Unicode normalisation"):
        SafeArchive(p)


def test_corrupt_member_data_is_a_rejection(tmp_path):
    p = make_zip(tmp_path / "d.zip", [("a.bin", os.urandom(4000))])
    data = bytearray(p.read_bytes())
    data[60:80] = bytes(20)  # inside the deflate stream of the only member
    p.write_bytes(bytes(data))
    with SafeArchive(p) as z, pytest.raises(Rejected, match="corrupt or truncated|cannot be"):
        z.read("a.bin")


def test_iter_files_refuses_hard_links_fifos_and_too_many(tmp_path):
    from gpueval.limits import Limits

    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.tiff").write_bytes(b"a")
    assert [p.name for p in iter_files(sub)] == ["a.tiff"]
    os.link(sub / "a.tiff", tmp_path / "elsewhere")
    with pytest.raises(Rejected, match="hard link"):
        list(iter_files(sub))
    assert len(list(iter_files(sub, allow_hardlinks=True))) == 1
    os.unlink(tmp_path / "elsewhere")
    os.mkfifo(sub / "b.tiff")
    with pytest.raises(Rejected, match="not a regular file"):
        list(iter_files(sub))
    os.unlink(sub / "b.tiff")
    for i in range(5):
        (sub / f"c{i}").write_bytes(b"")
    with pytest.raises(Rejected, match="more than 3 files"):
        list(iter_files(sub, limits=Limits(max_files=3)))
