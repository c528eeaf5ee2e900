"""Files that appear complete or not at all, under names no other writer holds."""

import errno
import os

import pytest

from hyv_jax.io import atomic_file
from hyv_jax.io.atomic_file import MAX_NAME_BYTES, fit_name, write_new, write_replacing


def test_names_are_cut_in_bytes_at_character_boundaries():
    assert fit_name("abc", ".mp4") == "abc.mp4"
    name = fit_name("猫" * 100, ".mp4")  # 3 bytes a character
    assert len(name.encode()) == 253 and name == "猫" * 83 + ".mp4"
    assert len(fit_name("é" * 300, "_12.mp4").encode()) <= MAX_NAME_BYTES
    with pytest.raises(ValueError, match="no room"):
        fit_name("a", "x" * 255)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")

    def failing(temp):
        temp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_replacing(target, failing)
    with pytest.raises(OSError, match="No space"):
        write_new(tmp_path / "n.bin", failing)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]
    write_replacing(target, lambda temp: temp.write_bytes(b"new"))
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["t.bin"]


def test_new_files_take_numbered_names_also_without_hard_links(tmp_path, monkeypatch):
    paths = [write_new(tmp_path / "v.mp4", lambda temp, i=i: temp.write_bytes(bytes([i]))) for i in range(2)]

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic_file.os, "link", no_links)
    paths.append(write_new(tmp_path / "v.mp4", lambda temp: temp.write_bytes(b"\x02")))
    assert [p.name for p in paths] == ["v.mp4", "v_2.mp4", "v_3.mp4"]
    assert [p.read_bytes() for p in paths] == [b"\x00", b"\x01", b"\x02"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4", "v_2.mp4", "v_3.mp4"]
    assert oct(os.stat(paths[0]).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
