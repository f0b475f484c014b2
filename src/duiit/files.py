"""Writing outputs so that a failure, a kill, a full disk or a second process never leaves
them half-written, and reading back what duiit wrote with a clear error when it is damaged.

One helper per job: `atomic_path` (every single-file output), `staged_dir` (every output
folder), `folder_lock` (one process per run or experiment folder), `new_output` (outputs are
never replaced without --force), `disk_errors` (a full disk named as such).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from duiit.errors import DuiitError, DuiitWarning

# "No space": a full device, a file-size limit (`ulimit -f`: EFBIG, Python ignores SIGXFSZ)
# or a disk quota.
NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
LOCK_NAME = ".duiit.lock"


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Report running out of space while writing `path` as one clear error."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        raise DuiitError(
            f"no space left while writing {path} ({exc.strerror}); free some space (or raise "
            "the quota or file-size limit) and run the command again"
        ) from None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds it is renamed over `path`,
    when it fails it is removed and `path` keeps its previous content. The name is unique per
    process and call, so two processes never write one temporary file; it keeps the suffix,
    for writers that choose the format by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        with disk_errors(path):
            yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(text: str, path: Path) -> None:
    """Atomic text write: readers never see half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(obj: Any, path: Path) -> None:
    """Atomic JSON write."""
    write_text(json.dumps(obj, indent=2, default=str), path)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Atomic CSV write of a table, without its index."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_json(path: Path) -> Any:
    """A JSON file duiit wrote; a damaged one is named with what to do."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DuiitError(
            f"{path} is damaged ({exc}); delete it and run the command that wrote it again"
        ) from None


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV table duiit wrote; a damaged one is named with what to do."""
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise DuiitError(
            f"{path} is damaged ({reason}); delete it and run the command that wrote it again"
        ) from None


def new_output(path: Path, force: bool = False) -> None:
    """Outputs are never replaced silently: an existing `path` is refused unless `force`."""
    if Path(path).exists() and not force:
        kind = "folder" if Path(path).is_dir() else "file"
        raise DuiitError(
            f"output {kind} {path} already exists; choose another or pass --force to replace it"
        )


@contextmanager
def staged_dir(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder of `out`; on success it replaces `out`, on any error
    it is removed and `out` is left as it was. An existing `out` is refused unless `force`."""
    out = Path(out)
    new_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp's folder is private; an output is made as any folder
    try:
        with disk_errors(out):
            yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _holder(fd: int) -> str:
    """Who holds a lock, from what the holder wrote into the lock file."""
    try:
        info = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']} (`{info['command']}`, since {since})"
    except (ValueError, KeyError, TypeError):  # the holder has not written it yet
        return "another process"


@contextmanager
def folder_lock(folder: Path, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold `folder` for this process, or fail naming the process that holds it: at once,
    or after trying again for `wait` seconds, with back-off.

    An advisory `flock` on `folder/.duiit.lock`: the kernel releases it when its holder ends,
    however it ends (kill -9 included), so a dead process never leaves a lock that blocks,
    and no pid or host has to be checked for liveness (pids are reused). Across machines it
    is the shared file system's lock, which outlives a machine that died: NFS v4 releases
    the locks of a crashed client when its lease expires (90 s by default), NFS v3 only when
    that machine comes back. `wait` is for that case (a run retried elsewhere after its node
    died); the error then says how to release a lock whose holder is known to be gone. The
    file says who holds it, for the message; it is removed on release.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    deadline, pause = time.monotonic() + wait, 0.5
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            left = deadline - time.monotonic()
            if left > 0:
                time.sleep(min(pause, left))
                pause = min(2 * pause, 15.0)
                continue
            if wait <= 0:
                raise DuiitError(
                    f"{what} {folder} is in use by {holder}; wait for it to finish or stop "
                    "it, or use another folder"
                ) from None
            raise DuiitError(
                f"{what} {folder} is still in use by {holder} after {wait:.0f}s of waiting; "
                "if that process is gone (its machine died, and the shared file system keeps "
                f"its lock), delete {path} and run the same command again"
            ) from None
        except OSError as exc:  # a file system without locks: run, but say what is at risk
            warnings.warn(
                f"cannot lock {folder} ({exc.strerror}); two processes on it would collide",
                DuiitWarning,
                stacklevel=3,
            )
            os.close(fd)
            fd = -1
            break
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # else the previous holder removed this file while we waited: retry
        os.close(fd)
    if fd >= 0:
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.write(fd, json.dumps({**info, "command": " ".join(sys.argv)}).encode())
    try:
        yield
    finally:
        if fd >= 0:
            path.unlink(missing_ok=True)  # while still holding it: see the inode check above
            os.close(fd)
