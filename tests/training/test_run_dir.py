"""Run directories: one writer at a time, no silent mixing of runs, leftovers cleaned up."""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medtoolkit.training import run_dir
from medtoolkit.training.checkpoint import TMP_SUFFIX
from medtoolkit.training.run_dir import RunDirectoryError, open_run_dir, run_files, stale_temporaries

OLD_RUN = ["checkpoint_seed0.pt", "config.yaml", "curves.png", "metrics.json", "model_seed0.pt",
           "model_seed1.pt", "report.md"]
USER_FILES = ["notes.txt", "model.pt", "my_config.yaml", "notes.txt.tmp", "plots/curves.png"]


def names(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def populate(directory: Path, files: list[str]) -> None:
    for name in files:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(name, encoding="utf-8")


# ---------------------------------------------------------------------------- an earlier run
def test_a_fresh_or_unrelated_directory_is_accepted_and_created(tmp_path: Path) -> None:
    populate(tmp_path, USER_FILES)
    with open_run_dir(tmp_path) as out:
        assert out == tmp_path
    with open_run_dir(tmp_path / "new" / "run") as out:
        assert out.is_dir()
    assert names(tmp_path) == sorted(USER_FILES)  # nothing touched, the lock file is gone


@pytest.mark.parametrize("existing", ["config.yaml", "metrics.json", "model_seed0.pt", "checkpoint_legacy.pt"])
def test_a_directory_holding_a_run_is_refused_without_a_flag(tmp_path: Path, existing: str) -> None:
    populate(tmp_path, [existing])
    with pytest.raises(RunDirectoryError) as caught:
        with open_run_dir(tmp_path):
            pass
    assert str(caught.value) == (
        f"{tmp_path} already holds a run ({existing}); pass --resume to continue it or "
        "--overwrite to replace it (Python: resume=True / overwrite=True)"
    )
    assert isinstance(caught.value, ValueError)  # the command line prints it as an error line


def test_the_refusal_lists_the_first_three_files(tmp_path: Path) -> None:
    populate(tmp_path, OLD_RUN)
    listed = "holds a run (checkpoint_seed0.pt, config.yaml, curves.png, ...)"
    with pytest.raises(RunDirectoryError, match=re.escape(listed)):
        with open_run_dir(tmp_path):
            pass


def test_resume_keeps_the_run(tmp_path: Path) -> None:
    populate(tmp_path, OLD_RUN)
    with open_run_dir(tmp_path, resume=True):
        assert names(tmp_path) == sorted([*OLD_RUN, ".lock"])
    assert names(tmp_path) == OLD_RUN


def test_overwrite_removes_only_the_files_medtoolkit_writes(tmp_path: Path) -> None:
    populate(tmp_path, OLD_RUN + USER_FILES)
    with open_run_dir(tmp_path, overwrite=True):
        assert run_files(tmp_path) == []
    assert names(tmp_path) == sorted(USER_FILES)


STAGED_RUN = ["checkpoint_seed0.pretrain.pt", "config.yaml", "groups.png", "metrics.json",
              "model_seed0.pretrain.pt", "model_seed0.tune.h0.pt", "model_seed0.tune.h17.pt", "report.md"]


def test_a_staged_run_is_recognised_and_overwrite_removes_its_files(tmp_path: Path) -> None:
    populate(tmp_path, STAGED_RUN + USER_FILES + ["tune.h0.pt", "model_seed0.tune.h0.pt.bak"])
    assert [p.name for p in run_files(tmp_path)] == STAGED_RUN
    with pytest.raises(RunDirectoryError, match=re.escape("holds a run (checkpoint_seed0.pretrain.pt, config.yaml, "
                                                          "groups.png, ...)")):
        with open_run_dir(tmp_path):
            pass
    with open_run_dir(tmp_path, overwrite=True):
        assert run_files(tmp_path) == []
    assert names(tmp_path) == sorted(USER_FILES + ["tune.h0.pt", "model_seed0.tune.h0.pt.bak"])


def test_resume_and_overwrite_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^--resume and --overwrite exclude each other"):
        with open_run_dir(tmp_path, resume=True, overwrite=True):
            pass


# ---------------------------------------------------------------------------- interrupted writes
@pytest.mark.parametrize("flag", [{}, {"resume": True}, {"overwrite": True}], ids=["fresh", "resume", "overwrite"])
def test_temporaries_of_interrupted_writes_are_removed(tmp_path: Path, flag: dict[str, bool]) -> None:
    leftovers = [f"checkpoint_seed0.pt8k2j_x1{TMP_SUFFIX}", f"metrics.json_a9{TMP_SUFFIX}",
                 f"config.yamlq0{TMP_SUFFIX}", f"model_seed0.ptZZ{TMP_SUFFIX}"]
    populate(tmp_path, leftovers + USER_FILES)
    assert [p.name for p in stale_temporaries(tmp_path)] == sorted(leftovers)
    with open_run_dir(tmp_path, **flag):
        pass
    assert names(tmp_path) == sorted(USER_FILES)  # notes.txt.tmp is the user's: kept


# ---------------------------------------------------------------------------- one writer at a time
def test_a_directory_in_use_is_refused_and_free_again_afterwards(tmp_path: Path) -> None:
    with open_run_dir(tmp_path):
        assert (tmp_path / ".lock").read_text(encoding="ascii") == f"{os.getpid()}\n"
        with pytest.raises(RunDirectoryError) as caught:
            with open_run_dir(tmp_path, overwrite=True):
                pass
        assert str(caught.value) == f"{tmp_path} is in use by another medtoolkit process (pid {os.getpid()})"
    with open_run_dir(tmp_path):  # released
        pass
    assert not (tmp_path / ".lock").exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        with open_run_dir(tmp_path):
            raise KeyError("boom")
    with open_run_dir(tmp_path):
        pass


def test_another_process_holding_the_directory_is_named(tmp_path: Path) -> None:
    holder = textwrap.dedent(f"""
        import sys
        from medtoolkit.training.run_dir import open_run_dir
        with open_run_dir({str(tmp_path)!r}):
            print("locked", flush=True)
            sys.stdin.read()
    """)
    process = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "locked\n"
        with pytest.raises(RunDirectoryError) as caught:
            with open_run_dir(tmp_path, resume=True):
                pass
        assert str(caught.value) == f"{tmp_path} is in use by another medtoolkit process (pid {process.pid})"
    finally:
        process.communicate("", timeout=60)
    assert process.returncode == 0
    with open_run_dir(tmp_path):  # the holder exited: free
        pass


def test_a_file_system_without_locks_warns_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(handle: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_dir.fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="medtoolkit"):
        with open_run_dir(tmp_path):
            pass
    expected = f"cannot lock {tmp_path} ([Errno 37] No locks available): a concurrent run into it would not be detected"
    assert expected in caplog.text
    assert not (tmp_path / ".lock").exists()


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("precious data\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(target)
    with pytest.raises(RunDirectoryError, match=re.escape(f"{out / '.lock'} is a symbolic link")):
        with open_run_dir(out):
            pass
    assert target.read_text() == "precious data\n"


def test_a_lock_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / ".lock")
    with pytest.raises(RunDirectoryError, match=re.escape(f"{out / '.lock'} is not a regular file")):
        with open_run_dir(out):
            pass


def test_a_run_directory_that_is_a_file_or_empty_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(RunDirectoryError, match=re.escape(f"{taken} exists and is not a directory")):
        with open_run_dir(taken):
            pass
    with pytest.raises(RunDirectoryError, match="the run directory is empty"):
        with open_run_dir(""):
            pass
