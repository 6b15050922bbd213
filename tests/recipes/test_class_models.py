"""minicnn.recipes.class_models: the page it writes holds one row per objective and seed, each p(c) the
network's softmax of that class model (checked against a direct class_model call)."""
import numpy as np

from minicnn.models import load_pretrained
from minicnn.ops import softmax
from minicnn.recipes import class_models
from minicnn.viz.ascent import class_model


def test_the_page_names_its_command_and_holds_the_probabilities(tmp_path):
    page = tmp_path / "class-models.md"
    assert class_models.main(["--seeds", "1", "--steps", "2", "--out", str(page)]) == 0
    text = page.read_text()
    assert "python -m minicnn.recipes.class_models --seeds 1 --steps 2 --out docs/results/class-models.md" in text
    rows = [line for line in text.splitlines() if line.startswith(("| score |", "| log_probability |"))]
    assert len(rows) == 2
    net = load_pretrained("shapes_vgg")
    result = class_model(net, 3, steps=2, objective="score", seed=1, progress=False)
    want = softmax(result.output[None].astype(np.float64))[0, 3]
    assert rows[0].split("|")[3 + 3].strip() == f"{want:.3f}"
