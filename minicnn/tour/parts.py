"""What a tour section makes and hands back: figures (Panel), tables (Table), or the reason it was
skipped (Skipped); and the Tour in progress that every section receives."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

from .. import plot
from .subject import Subject


class Skipped(Exception):
    """A section that cannot be made for this model or these images; the message says why."""


class Panel(NamedTuple):
    """One figure of the gallery: its file name (in the output folder) and a one-line caption."""

    file: str
    caption: str


class Table(NamedTuple):
    """A small table of the gallery: column names, rows of strings, and a caption."""

    header: list
    rows: list
    caption: str


@dataclass
class Tour:
    """A tour in progress: the subject, the output folder, and maps (and dissections) computed once, shared by
    sections."""

    subject: Subject
    out: Path
    maps: dict = field(default_factory=dict)
    number: int = 0

    @property
    def budget(self):
        return self.subject.budget

    def path(self, name):
        """The path of figure `name` of the current section, e.g. 03_saliency.png."""
        return self.out / f"{self.number:02d}_{name}.png"

    def panel(self, figure, name, caption):
        """Save a matplotlib Figure as self.path(name) and return its Panel."""
        path = self.path(name)
        plot.save_figure(figure, path)
        return Panel(path.name, caption)


class SectionResult(NamedTuple):
    """What one section produced: its Panels and Tables, or the reason it was skipped, and its time."""

    key: str
    title: str
    lesson: str
    items: list
    skipped: Optional[str]
    seconds: float
