"""Atomic file output: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputError


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # what open() would give; mkstemp's own 0600 would hide artifacts from other users


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def check_output_file(target: str | os.PathLike, option: str = "-o/--output") -> None:
    """Refuse, before any work, an output file whose folder is missing, is a file, or cannot be written
    (OutputError, exit 4): found only after calibration it cost minutes and read as an internal error."""
    folder = Path(target).parent
    ancestor = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise OutputError(f"'{ancestor}' is a file, not a folder: choose another {option}")
    if not folder.is_dir():
        raise OutputError(f"output folder '{folder}' does not exist: create it or choose another {option}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cnnexport-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to '{folder}': {exc.strerror or exc}; choose a writable folder with "
                          f"{option}") from None


def write_json(target: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


STAGING_PREFIX = ".cnnexport-staging-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_staging(folder: Path) -> None:
    """Staging folders left by a run that was killed (SIGKILL, power loss): their process is gone."""
    for entry in folder.glob(f"{STAGING_PREFIX}*"):
        pid = entry.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


class StagingDir:
    """A hidden folder inside the output folder where a run writes all its files.

    ``commit()`` renames each staged file into the output folder (each rename is atomic);
    ``discard()`` removes the staging folder and, if this run created the output folder and
    it is still empty, the output folder too. Nothing half-written ever appears under a
    final name.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = Path(output_dir)
        created = []
        try:
            missing = [p for p in [self.output_dir, *self.output_dir.parents] if not p.exists()]
            for p in reversed(missing):
                p.mkdir()
                created.append(p)
            _remove_stale_staging(self.output_dir)
            self.path = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.output_dir))
        except OSError as exc:
            for p in reversed(created):
                with contextlib.suppress(OSError):
                    p.rmdir()
            raise OutputError(
                f"cannot write to output directory '{output_dir}': {exc.strerror or exc}; "
                "choose a writable folder with -o/--output-dir"
            ) from None
        self._created = created

    def file(self, name: str) -> Path:
        return self.path / name

    def commit(self, names: list[str] | None = None, remove: list[str] = ()) -> list[Path]:
        """Move staged files (all, or ``names`` in that order) into the output folder, then delete
        ``remove`` there (an earlier run's files this one replaces by not writing them again)."""
        names = names if names is not None else sorted(p.name for p in self.path.iterdir())
        final = []
        try:
            for name in names:
                dest = self.output_dir / name
                if (self.path / name).is_dir() and dest.is_dir():
                    shutil.rmtree(dest)  # a folder this run wrote again (a study's configuration) replaces it
                os.replace(self.path / name, dest)
                final.append(dest)
            for name in remove:
                with contextlib.suppress(FileNotFoundError):
                    (self.output_dir / name).unlink()
        except OSError as exc:
            raise OutputError(
                f"cannot move artifacts into '{self.output_dir}': {exc.strerror or exc}"
            ) from None
        finally:
            self.discard(remove_created=False)
        return final

    def discard(self, remove_created: bool = True) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if remove_created:
            for p in reversed(self._created):
                with contextlib.suppress(OSError):
                    p.rmdir()
