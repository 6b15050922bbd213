"""Every lesson runs top to bottom (its asserts hold) and writes its figures where it is told to.

Lessons are found by glob, so a lesson added later is covered without touching this file.
Each runs in a subprocess, as a student would run it, with `--out` a temporary folder.
"""
import os
import subprocess
import sys

import pytest

from helpers import LESSONS as LESSONS_DIR

LESSONS = sorted(LESSONS_DIR.glob("[0-9]*.py"))
TIMEOUT_SECONDS = 300  # generous: two shared cores, and a first run may compile the Numba kernels


def test_there_are_lessons():
    assert len(LESSONS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_runs_and_writes_figures(lesson, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", MINICNN_OUT=str(tmp_path / "from_env_should_not_be_used"))
    result = subprocess.run([sys.executable, str(lesson), "--out", str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert result.returncode == 0, f"{lesson.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    figures = list(tmp_path.rglob("*.png"))
    assert figures, f"{lesson.name} wrote no PNG under {tmp_path}"
    assert all(path.stat().st_size > 1000 for path in figures)
    assert not (tmp_path / "from_env_should_not_be_used").exists()  # --out wins over MINICNN_OUT
    assert not list(LESSONS_DIR.glob("*.png"))  # never into the repository


def uses_trained_models(lesson):
    return "load_pretrained(" in lesson.read_text(encoding="utf-8")


@pytest.mark.parametrize("lesson", LESSONS, ids=[path.stem for path in LESSONS])
def test_help_lists_the_options_and_runs_nothing(lesson, tmp_path):
    result = subprocess.run([sys.executable, str(lesson), "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout and "--weights" in result.stdout
    assert "figures go to" not in result.stdout  # it stopped before the lesson began


@pytest.mark.parametrize("lesson", [path for path in LESSONS if uses_trained_models(path)],
                         ids=[path.stem for path in LESSONS if uses_trained_models(path)])
def test_weights_option_is_used_by_every_lesson_on_trained_models(lesson, tmp_path):
    """Pointed at a folder without weights, the lesson must fail saying so (it does not quietly use the
    shipped ones)."""
    empty = tmp_path / "no-weights-here"
    empty.mkdir()
    result = subprocess.run([sys.executable, str(lesson), "--out", str(tmp_path), "--weights", str(empty)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert result.returncode != 0
    assert "no-weights-here" in result.stderr and "not found" in result.stderr, result.stderr[-2000:]
