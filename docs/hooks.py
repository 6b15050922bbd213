"""MkDocs hooks (mkdocs.yml `hooks:`): the pages made from the code, at build time.

- The lessons: before the site's files are collected, minicnn.recipes.render_lessons runs every
  lessons/NN_name.py cell by cell and writes a Markdown page per lesson, with what each cell printed
  and drew, into a folder outside docs/ (generated pages are never committed). Those pages join the
  site under lessons/, and the nav's "Lessons" entry lists them in the lecture's order.
- The API reference: one page per public module (api_modules), each `::: minicnn.<module>` for
  mkdocstrings; the nav's "API reference" entry lists them.
- The results: a page added to docs/results/ joins the nav's "Results" entry by itself.
- The explorer's screenshots, linked from explore.md as explore-screenshots/NAME.png: the files that
  `python -m minicnn.explore.screenshots --out explore-screenshots` wrote in the checkout, or, where it
  has not been run (never committed), a picture saying which command draws them.
- weights/README.md (written by minicnn.recipes.train_shapes) joins the site as shipped-weights.md,
  and Pygments' colours as css/pygments.css.

    MINICNN_DOCS_LESSONS=run   (default) run the lessons; a page whose sources are unchanged is reused
    MINICNN_DOCS_LESSONS=skip  do not run them: the lesson pages show code and text only (seconds, not minutes)
    MINICNN_DOCS_LESSONS_DIR   where the lesson pages are generated (default: build/docs-lessons in the checkout)
"""
import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File
from pygments.formatters import HtmlFormatter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's minicnn, not another installed copy

from minicnn.recipes import render_lessons  # noqa: E402

MODES = ("run", "skip")
LESSONS_ENTRY = "Lessons"  # the nav entries whose pages the hook fills in
API_ENTRY = "API reference"
RESULTS_ENTRY = "Results"  # the hook adds every docs/results/*.md page the nav does not list yet
# not in the API reference: the faces and tools (documented by their --help and the guide), the
# argument checks, and the Numba kernels (they trust their callers; the ops are their public face)
NOT_API = {"__main__", "cli", "explain", "user_input", "tour", "recipes", "explore", "index.command", "checks", "kernels"}
PYGMENTS_CSS = "css/pygments.css"  # the colours of Pygments' highlighted code (mkdocs.yml extra_css)
SCREENSHOTS = "explore-screenshots"  # folder in the checkout and in the site; explore.md links into it
SHIPPED_WEIGHTS_PAGE = "shipped-weights.md"  # weights/README.md, the shipped weights' own page, shown as is


def mode():
    """MINICNN_DOCS_LESSONS: 'run' (the default) or 'skip'."""
    value = os.environ.get("MINICNN_DOCS_LESSONS", "run")
    if value not in MODES:
        raise SystemExit(f"MINICNN_DOCS_LESSONS must be one of {MODES}, got {value!r}")
    return value


def lesson_pages_dir():
    return Path(os.environ.get("MINICNN_DOCS_LESSONS_DIR", REPO / "build" / "docs-lessons"))


def api_modules(package=REPO / "minicnn"):
    """The public modules, as dotted names below minicnn, sorted: every subpackage and .py file except
    minicnn itself, private names (_x), NOT_API (a subpackage, or one dotted module), and modules of a folder
    without __init__.py (not a package: mkdocstrings cannot find them)."""
    found = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]  # a subpackage: its page shows what it exports
        folders_are_packages = all((package.joinpath(*parts[:depth]) / "__init__.py").is_file()
                                   for depth in range(1, len(parts)))
        if parts and not any(part.startswith("_") for part in parts) and parts[0] not in NOT_API \
                and ".".join(parts) not in NOT_API and folders_are_packages:
            found.append(".".join(parts))
    return sorted(found)


def fill(nav, entry, pages):
    """Replace the value of the nav's top-level `entry` with the list of pages."""
    for item in nav:
        if isinstance(item, dict) and entry in item:
            item[entry] = pages


def on_config(config):
    """Fill the nav's Lessons entry (the index, then one page per lesson in order) and API reference entry."""
    lessons = [{"All lessons": "lessons/index.md"}]
    lessons += [{render_lessons.title_of(path): f"lessons/{path.stem}.md"} for path in render_lessons.lesson_files()]
    fill(config.nav, LESSONS_ENTRY, lessons)
    fill(config.nav, API_ENTRY, [{"Overview": "api/index.md"}] + api_nav(api_modules()))
    for item in config.nav:
        if isinstance(item, dict) and RESULTS_ENTRY in item:
            item[RESULTS_ENTRY] = item[RESULTS_ENTRY] + unlisted_results(item[RESULTS_ENTRY])
    return config


def unlisted_results(listed):
    """Nav entries {title: path} for the docs/results/*.md pages not among listed (titled by their first heading)."""
    paths = {path for entry in listed for path in entry.values()}
    entries = []
    for page in sorted((REPO / "docs" / "results").glob("*.md")):
        path = f"results/{page.name}"
        if path not in paths:
            heading = re.search(r"^# (.+)$", page.read_text(encoding="utf-8"), flags=re.M)
            entries.append({heading.group(1) if heading else page.stem: path})
    return entries


def api_nav(modules):
    """Nav entries: a top-level module is one page; a subpackage is a section of its page and its modules'."""
    entries, sections = [], {}
    for module in modules:
        package = module.split(".")[0]
        if module == package and not any(other.startswith(package + ".") for other in modules):
            entries.append({f"minicnn.{module}": f"api/minicnn.{module}.md"})
            continue
        if package not in sections:
            sections[package] = []
            entries.append({f"minicnn.{package}": sections[package]})
        sections[package].append({f"minicnn.{module}": f"api/minicnn.{module}.md"})
    return entries


def api_index():
    lines = ["# API reference", "",
             "Generated from the docstrings, one page per public module: each says the math, the shapes and",
             "the contract. The modules in the order of [the architecture](../guide/architecture.md) start",
             "with `minicnn.shapes` and `minicnn.im2col` (the math) and `minicnn.ops` (the operations).", ""]
    return "\n".join(lines + [f"- [minicnn.{module}](minicnn.{module}.md)" for module in api_modules()]) + "\n"


def missing_screenshot(name):
    """PNG bytes of a small picture saying that this screenshot was not drawn and which command draws it."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 0.9))
    fig.text(0.5, 0.5, f"{name}: not drawn for this build\npython -m minicnn.explore.screenshots --out {SCREENSHOTS}",
             ha="center", va="center", fontsize=10, family="monospace")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def on_files(files, config):
    """Add the generated pages: the lessons (rendered, or reused when unchanged), the API pages, the rest."""
    out = lesson_pages_dir()
    render_lessons.render_all(out, run=mode() == "run", reuse=True,
                              log=lambda line: print(f"INFO    -  minicnn lessons: {line}"))
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.suffix in (".md", ".png"):
            files.append(File.generated(config, f"lessons/{path.relative_to(out).as_posix()}", abs_src_path=str(path)))
    files.append(File.generated(config, "api/index.md", content=api_index()))
    for module in api_modules():
        files.append(File.generated(config, f"api/minicnn.{module}.md", content=f"# minicnn.{module}\n\n::: minicnn.{module}\n"))
    files.append(File.generated(config, PYGMENTS_CSS, content=HtmlFormatter(style="friendly").get_style_defs(".highlight")))
    for name in sorted(set(re.findall(rf"\]\({SCREENSHOTS}/([\w.-]+\.png)\)", (REPO / "docs" / "explore.md").read_text(encoding="utf-8")))):
        shot = REPO / SCREENSHOTS / name
        files.append(File.generated(config, f"{SCREENSHOTS}/{name}", abs_src_path=str(shot)) if shot.is_file()
                     else File.generated(config, f"{SCREENSHOTS}/{name}", content=missing_screenshot(name)))
    files.append(File.generated(config, SHIPPED_WEIGHTS_PAGE, abs_src_path=str(REPO / "weights" / "README.md")))
    return files
