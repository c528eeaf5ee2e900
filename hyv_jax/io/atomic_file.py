"""Files that appear complete or not at all: each is written under a temporary name in its
target folder (same file system, so the final rename is atomic) and renamed once whole. A
failed or interrupted write (a full disk, an exception) removes the temporary file; a killed
process leaves at most a hidden `.NAME.XXXXXXXX.partial` beside the target, never a short
file under the target's name."""

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

MAX_NAME_BYTES = 255  # one file name on ext4, XFS, btrfs, APFS, NTFS (UTF-8 bytes)
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}


def fit_name(stem: str, suffix: str, limit: int = MAX_NAME_BYTES) -> str:
    """stem + suffix in at most `limit` UTF-8 bytes: the stem is cut at a character boundary
    (a 132-character Chinese prompt is ~400 bytes)."""
    room = limit - len(suffix.encode())
    if room < 1:
        raise ValueError(f"file suffix {suffix!r} leaves no room for a name in {limit} bytes")
    return stem.encode()[:room].decode("utf-8", "ignore") + suffix


def _temporary(target: Path) -> Path:
    """A new empty file beside `target`, created exclusively with the usual permissions."""
    for _ in range(100):
        temp = target.parent / f".{fit_name(target.name, '', 100)}.{secrets.token_hex(4)}.partial"
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return temp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {target.parent}")


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:  # some file systems (and folders on some) cannot fsync
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write(target: Path, write: Callable[[Path], None], publish: Callable[[Path, Path], Path]) -> Path:
    temp = _temporary(target)
    try:
        write(temp)
        _sync(temp)
        final = publish(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _sync(final.parent)
    return final


def write_replacing(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls write(temporary path), then renames the result to `target`, replacing a file there."""
    return _write(Path(target), write, lambda temp, final: Path(os.replace(temp, final) or final))


def write_new(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls write(temporary path), then gives the file the name `target` (cut to 255 bytes),
    or `STEM_2.SUFFIX`, `STEM_3.SUFFIX`... when that name is taken; returns the name it got.
    Never replaces a file: the name is claimed by an exclusive create, so two writers never end
    on one path."""
    target = Path(target)
    return _write(target.with_name(fit_name(target.stem, target.suffix)), write, _publish_new)


def _publish_new(temp: Path, target: Path) -> Path:
    for i in range(1, 10_000):
        candidate = target if i == 1 else target.with_name(fit_name(target.stem, f"_{i}{target.suffix}"))
        try:
            os.link(temp, candidate)  # fails if the name exists: the claim and the content arrive together
        except FileExistsError:
            continue
        except OSError as error:
            if error.errno not in _NO_HARD_LINKS:
                raise
            try:  # no hard links here: claim the name with an exclusive create, then rename over it
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            except FileExistsError:
                continue
            try:
                os.replace(temp, candidate)
            except BaseException:
                candidate.unlink(missing_ok=True)
                raise
            return candidate
        temp.unlink()
        return candidate
    raise FileExistsError(f"{target} and 9998 numbered variants exist; choose another folder")
