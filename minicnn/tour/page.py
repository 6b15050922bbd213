"""The tour's index.html: a contact sheet, then every section's figures with their captions."""
import html

from .parts import Table

GALLERY = "gallery.png"  # one picture of the whole tour: the first figure of every section

# ----------------------------------------------------------------------------------------------
# index.html

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
nav a { margin-right: 0.8em; }
section { border-top: 1px solid #ccc; margin-top: 2em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.95em; color: #333; }
.skipped { color: #a33; }
.meta { color: #666; font-size: 0.85em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
"""


def index_html(subject, results, seconds, with_gallery=False):
    """The gallery page: the contact sheet (if made), then a heading per section, each figure with its
    caption, skipped sections' reasons."""
    escape = html.escape
    nav = " ".join(f'<a href="#{r.key}">{escape(r.title)}</a>' for r in results)
    body = ["<h1>minicnn tour: visualizing CNNs</h1>",
            f"<p>{escape(subject.description)}.</p>",
            f'<p class="meta">{len(results)} sections in {seconds:.0f} s. Each section names the lesson '
            f"(in lessons/) that explains it step by step.</p>",
            f"<nav>{nav}</nav>"]
    if with_gallery:
        body.append(f'<figure><img src="{GALLERY}" alt="the whole tour at a glance"><figcaption>The tour at a '
                    "glance: the first figure of every section. Each is shown full size below.</figcaption></figure>")
    for number, result in enumerate(results, start=1):
        body.append(section_html(number, result))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>minicnn tour</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def section_html(number, result):
    escape = html.escape
    parts = [f'<section id="{result.key}">', f"<h2>{number}. {escape(result.title)}</h2>",
             f'<p class="meta">lesson: {escape(result.lesson)} · {result.seconds:.1f} s</p>']
    if result.skipped:
        parts.append(f'<p class="skipped">Not shown: {escape(result.skipped)}.</p>')
    for item in result.items:
        parts.append(table_html(item) if isinstance(item, Table) else
                     f'<figure><img src="{escape(item.file)}" alt="{escape(result.title)}">'
                     f"<figcaption>{escape(item.caption)}</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


def table_html(table):
    escape = html.escape
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><tr>{head}</tr>{rows}</table>\n<p>{escape(table.caption)}</p>"
