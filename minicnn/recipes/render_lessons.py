"""The lessons as Markdown pages: each lessons/NN_name.py run cell by cell, its printed text and its
figures placed under the cell that made them.

    python -m minicnn.recipes.render_lessons --out build/docs-lessons            # run every lesson
    python -m minicnn.recipes.render_lessons --out build/docs-lessons --no-run   # code and text only
    python -m minicnn.recipes.render_lessons --out DIR --only 01_convolution_is_a_matrix

A lesson is a script in `# %%` cells (the jupytext "percent" format): `# %% [markdown]` starts a
text cell whose lines are Markdown behind "# ", `# %%` starts a code cell. For every lesson this
writes <out>/<lesson>.md and its figures under <out>/<lesson>/, plus <out>/index.md listing them.
Each lesson runs in its own Python process with `--out <out>`, as `python lessons/NN_name.py --out
<out>` would, so a page shows what a student running the lesson sees. A page records a key of its
sources (the lesson, lessons/_common.py, every minicnn/*.py, the shipped weights); with --reuse a
page whose key still matches is kept instead of run again. The lessons live in a checkout, not in
the installed package: --lessons names their folder (default: the checkout's lessons/).
The documentation build calls render_all from docs/hooks.py.
"""
import argparse
import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
LESSONS = REPO / "lessons"
TIMEOUT_SECONDS = 900  # one lesson, on two shared cores, compiling the Numba kernels on a first run
KEY_LINE = "<!-- rendered from sources with key {key} -->"


class Cell(NamedTuple):
    """One `# %%` cell: kind "markdown" or "code", its text, and the line (1-based) where the text starts."""
    kind: str
    text: str
    first_line: int


class Ran(NamedTuple):
    """What a code cell did when run: its printed text and the figures it wrote (paths relative to the out folder)."""
    output: str
    figures: list


def lesson_files(folder=LESSONS):
    """The lessons in the lecture's order: <folder>/NN_name.py (the helpers in _common.py are not a lesson)."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.py"))


def cells(source):
    """Split a percent-format script into Cells; text before the first marker is a code cell if not blank.

    A markdown cell's lines lose their leading "# " (or a lone "#"); a code cell keeps its lines as written,
    without the blank lines around them."""
    found, kind, lines, first = [], "code", [], 1
    for number, line in enumerate(source.splitlines(), start=1):
        if line.startswith("# %%"):
            found.append(Cell(kind, lines, first))
            kind = "markdown" if "[markdown]" in line else "code"
            lines, first = [], number + 1
        else:
            lines.append(line)
    found.append(Cell(kind, lines, first))
    return [cell for cell in map(tidy, found) if cell.text.strip()]


def tidy(cell):
    """A Cell with its lines joined: markdown without the comment marks, code without blank lines around it
    (its text is blank if all its lines are)."""
    lines = cell.text
    if cell.kind == "markdown":
        lines = [re.sub(r"^# ?", "", line) for line in lines]
    leading = next((index for index, line in enumerate(lines) if line.strip()), len(lines))
    text = "\n".join(lines[leading:]).strip("\n")
    return Cell(cell.kind, text, cell.first_line + leading)


def title_of(lesson):
    """The lesson's first Markdown heading without its '#' marks (the file name if it has none)."""
    for cell in cells(Path(lesson).read_text(encoding="utf-8")):
        heading = re.search(r"^#+ (.+)$", cell.text, flags=re.M) if cell.kind == "markdown" else None
        if heading:
            return heading.group(1).strip()
    return Path(lesson).stem


def run_cells(lesson, out):
    """Run the lesson's code cells in order in this process, as `python <lesson> --out <out>` would run
    the whole file; returns one Ran per code cell. Figures are the PNG files that appeared under <out>
    while the cell ran. The lesson's folder goes first on sys.path (the lessons import _common)."""
    lesson, out = Path(lesson).resolve(), Path(out).resolve()
    sys.argv = [str(lesson), "--out", str(out)]
    sys.path.insert(0, str(lesson.parent))
    namespace = {"__name__": "__main__", "__file__": str(lesson)}
    results, seen = [], figure_times(out)
    for cell in cells(lesson.read_text(encoding="utf-8")):
        if cell.kind != "code":
            continue
        code = compile("\n" * (cell.first_line - 1) + cell.text, str(lesson), "exec")  # tracebacks keep line numbers
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
        now = figure_times(out)
        new = sorted((path for path in now if seen.get(path) != now[path]), key=lambda path: (now[path], path.name))
        seen = now
        results.append(Ran(printed.getvalue(), [path.relative_to(out).as_posix() for path in new]))
    return results


def figure_times(out):
    """{PNG path under out: its modification time in ns}: a figure is new when it appears or changes."""
    return {path: path.stat().st_mtime_ns for path in out.rglob("*.png")}


def shown_output(text, out):
    """Printed text as the page shows it: paths relative to the out folder, no '[figure]' lines (the figure follows)."""
    text = text.replace(str(Path(out).resolve()) + os.sep, "")
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("[figure]")).strip("\n")


def page(lesson, ran, out, key):
    """The Markdown page of one lesson. ran: one Ran per code cell, or None when the lesson was not run."""
    lesson = Path(lesson)
    command = f"python lessons/{lesson.name} --out DIR"
    if ran is None:
        note = (f"This build did not run the lessons (`MINICNN_DOCS_LESSONS=skip`): code and text only. "
                f"`{command}` runs it and prints what the full site shows here.")
    else:
        note = f"Generated by running `{command}`: under each cell, what it printed and the figures it drew."
    parts, code_index = [KEY_LINE.format(key=key)], 0
    for index, cell in enumerate(cells(lesson.read_text(encoding="utf-8"))):
        if cell.kind == "markdown":
            parts.append(cell.text)
            if index == 0:
                parts.append(f"*{note}*")
            continue
        parts.append(f"```python\n{cell.text}\n```")
        if ran is not None:
            output = shown_output(ran[code_index].output, out)
            if output:
                parts.append(f"```text\n{output}\n```")
            parts += [f"![{Path(figure).stem}]({figure})" for figure in ran[code_index].figures]
        code_index += 1
    return "\n\n".join(parts) + "\n"


def sources_key(lesson):
    """SHA-256 (first 16 hex digits) of what a rendered lesson depends on: the lesson, its folder's
    _common.py, every minicnn/*.py and the shipped weights."""
    lesson = Path(lesson)
    paths = [lesson, lesson.parent / "_common.py", *sorted((REPO / "minicnn").rglob("*.py")),
             *sorted((REPO / "weights").glob("*.npz"))]
    digest = hashlib.sha256()
    for path in paths:
        if path.is_file():
            digest.update(path.relative_to(path.anchor).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def is_current(page_path, key, ran):
    """True if page_path exists, was rendered from sources with this key, and was run if a run is wanted."""
    if not page_path.is_file():
        return False
    text = page_path.read_text(encoding="utf-8")
    return text.startswith(KEY_LINE.format(key=key)) and (not ran or "Generated by running" in text)


def render(lesson, out, run=True, reuse=False):
    """Write <out>/<lesson>.md (running the lesson in a new process if run); returns seconds spent running."""
    lesson, out = Path(lesson).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    target, key = out / f"{lesson.stem}.md", sources_key(lesson)
    if reuse and is_current(target, key, run):
        return 0.0
    shutil.rmtree(out / lesson.stem, ignore_errors=True)  # the lesson's figure folder: no stale figures
    if not run:
        target.write_text(page(lesson, None, out, key), encoding="utf-8")
        return 0.0
    start = time.perf_counter()
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "minicnn.recipes.render_lessons", "--out", str(out),
                             "--lessons", str(lesson.parent), "--only", lesson.stem, "--in-this-process"],
                            env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise RuntimeError(f"lesson {lesson.name} failed while rendering its page:\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    return time.perf_counter() - start


def index_page(lessons):
    """<out>/index.md: the lessons in order, each with its title and a link."""
    lines = ["# The lessons", "",
             "Each lesson is a script in `lessons/` that runs top to bottom (`python lessons/NN_name.py --out DIR`),",
             "prints what a student should see and asserts what it claims. Its `# %%` cells open as a notebook",
             "with jupytext. Here each is shown cell by cell with what it printed and drew.", ""]
    lines += [f"{number}. [{title_of(lesson)}]({lesson.stem}.md)" for number, lesson in enumerate(lessons, start=1)]
    return "\n".join(lines) + "\n"


def render_all(out, lessons_dir=LESSONS, run=True, reuse=False, only=None, log=print):
    """Render every lesson (or those named in only) into out and write out/index.md; returns the page paths."""
    lessons = [lesson for lesson in lesson_files(lessons_dir) if not only or lesson.stem in only]
    if only and len(lessons) != len(only):
        raise SystemExit(f"--only: no lesson named {sorted(set(only) - {lesson.stem for lesson in lessons})} "
                         f"in {lessons_dir}")
    for lesson in lessons:
        seconds = render(lesson, out, run=run, reuse=reuse)
        if seconds:
            log(f"rendered {lesson.name} in {seconds:.0f} s")
    if not only:
        (Path(out) / "index.md").write_text(index_page(lessons), encoding="utf-8")
    return [Path(out) / f"{lesson.stem}.md" for lesson in lessons]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the pages and their figures")
    parser.add_argument("--lessons", default=str(LESSONS), help="folder holding NN_name.py lessons (default: %(default)s)")
    parser.add_argument("--no-run", action="store_true", help="do not run the lessons: pages with code and text only")
    parser.add_argument("--reuse", action="store_true", help="keep pages whose sources have not changed")
    parser.add_argument("--only", nargs="+", default=None, help="lesson names (file stems) to render")
    parser.add_argument("--in-this-process", action="store_true", help=argparse.SUPPRESS)  # the child of render()
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.in_this_process:
        (lesson,) = [path for path in lesson_files(args.lessons) if path.stem in args.only]
        out = Path(args.out).resolve()
        ran = run_cells(lesson, out)
        (out / f"{lesson.stem}.md").write_text(page(lesson, ran, out, sources_key(lesson)), encoding="utf-8")
        return
    if not Path(args.lessons).is_dir():
        raise SystemExit(f"--lessons: no folder {args.lessons} (the lessons come with a checkout of minicnn)")
    render_all(args.out, args.lessons, run=not args.no_run, reuse=args.reuse, only=args.only)


if __name__ == "__main__":
    main()
