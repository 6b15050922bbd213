"""MkDocs hooks (mkdocs.yml `hooks:`): the lessons become pages of the site at build time.

Before the site's files are collected, minicnn.recipes.render_lessons runs every lessons/NN_name.py
cell by cell and writes a Markdown page per lesson, with what each cell printed and drew, into a
folder outside docs/ (generated pages are never committed); those pages join the site under
lessons/ and the nav's "Lessons" entry lists them in the lecture's order. weights/README.md (written
by minicnn.recipes.train_shapes) joins the site as shipped-weights.md.

    MINICNN_DOCS_LESSONS=run   (default) run the lessons; a page whose sources are unchanged is reused
    MINICNN_DOCS_LESSONS=skip  do not run them: the lesson pages show code and text only (seconds, not minutes)
    MINICNN_DOCS_LESSONS_DIR   where the pages are generated (default: build/docs-lessons in the checkout)
"""
import os
import sys
from pathlib import Path

from mkdocs.structure.files import File
from pygments.formatters import HtmlFormatter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's minicnn, not another installed copy

from minicnn.recipes import render_lessons  # noqa: E402

MODES = ("run", "skip")
LESSONS_ENTRY = "Lessons"  # the nav entry whose pages the hook fills in
PYGMENTS_CSS = "css/pygments.css"  # the colours of Pygments' highlighted code (mkdocs.yml extra_css)
SHIPPED_WEIGHTS_PAGE = "shipped-weights.md"  # weights/README.md, the shipped weights' own page, shown as is


def mode():
    """MINICNN_DOCS_LESSONS: 'run' (the default) or 'skip'."""
    value = os.environ.get("MINICNN_DOCS_LESSONS", "run")
    if value not in MODES:
        raise SystemExit(f"MINICNN_DOCS_LESSONS must be one of {MODES}, got {value!r}")
    return value


def pages_dir():
    return Path(os.environ.get("MINICNN_DOCS_LESSONS_DIR", REPO / "build" / "docs-lessons"))


def on_config(config):
    """Fill the nav's Lessons entry: the index, then one page per lesson in order."""
    lessons = [{"All lessons": "lessons/index.md"}]
    lessons += [{render_lessons.title_of(path): f"lessons/{path.stem}.md"} for path in render_lessons.lesson_files()]
    for entry in config.nav:
        if isinstance(entry, dict) and LESSONS_ENTRY in entry:
            entry[LESSONS_ENTRY] = lessons
    return config


def on_files(files, config):
    """Render the lessons (or reuse unchanged pages) and add the pages and figures under lessons/."""
    out = pages_dir()
    render_lessons.render_all(out, run=mode() == "run", reuse=True,
                              log=lambda line: print(f"INFO    -  minicnn lessons: {line}"))
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.suffix in (".md", ".png"):
            files.append(File.generated(config, f"lessons/{path.relative_to(out).as_posix()}", abs_src_path=str(path)))
    files.append(File.generated(config, PYGMENTS_CSS, content=HtmlFormatter(style="friendly").get_style_defs(".highlight")))
    files.append(File.generated(config, SHIPPED_WEIGHTS_PAGE, abs_src_path=str(REPO / "weights" / "README.md")))
    return files
