"""Small things several test modules share (one home): where the repository is."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
LESSONS = REPO / "lessons"
