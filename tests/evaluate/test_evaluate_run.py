"""One evaluation run (minicnn.evaluate.run / report) and `minicnn evaluate`: every CSV has its header and
one row per method (or per method and step), the numbers equal the metrics computed directly."""
import csv

from helpers import WEIGHTS

import numpy as np
import pytest
from helpers import WEIGHTS

from minicnn import cli
from minicnn.data import make_shapes
from minicnn.evaluate import Options, Settings, evaluate
from minicnn.evaluate.faithfulness import fill_images
from minicnn.evaluate.methods import method_maps
from minicnn.evaluate.report import write_results
from minicnn.evaluate.run import baseline_maps
from minicnn.models import load_pretrained, shapes_cam
from minicnn.ops import softmax
from minicnn.recipes import evaluate as evaluate_recipe
from minicnn.viz.pointing import centre_maps, pointed_pixel, pointing_hits

pytest.importorskip("skimage")
pytest.importorskip("maxflow")

SETTINGS = Settings(n=3, batch_size=2, options=Options(smooth=2), steps=4, examples=2)


def read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    net = load_pretrained("shapes_cam")
    # an untrained network stands in for the one trained on permuted labels (the data randomization test)
    results = evaluate(net, "shapes_cam", ["saliency", "CAM", "Grad-CAM"], settings=SETTINGS,
                       permuted=shapes_cam(seed=5))
    out = tmp_path_factory.mktemp("evaluation")
    text = write_results(results, SETTINGS, out, command="minicnn evaluate --model shapes_cam")
    return net, results, out, text


def test_every_metric_writes_its_csv_markdown_and_figures(run):
    _, _, out, text = run
    rows = ["saliency", "CAM", "Grad-CAM", "centre", "random"]
    for metric in ("pointing", "deletion", "insertion", "segmentation"):
        assert [row["method"] for row in read_csv(out / f"{metric}.csv")] == rows, metric
    randomization = read_csv(out / "randomization.csv")
    # the trained network, 5 cascade and 5 independent steps, the network trained on permuted labels
    assert len(randomization) == 3 * (1 + 2 * 5 + 1)
    assert [row["mode"] for row in randomization[-3:]] == ["data"] * 3
    assert list(randomization[0]) == ["mode", "step", "layers", "accuracy", "method", "spearman_abs",
                                      "spearman_signed", "ssim", "constant_maps"]
    switches = read_csv(out / "switches.csv")  # saliency is the only backward rule among the methods
    assert [(row["network"], row["method"], row["switches"]) for row in switches] == [
        (network, "saliency", own) for network in ("trained", "top re-drawn", "all re-drawn") for own in ("own", "flat")]
    for name in ("maps.png", "curves.png", "randomization.png", "randomization_similarity.png"):
        assert (out / name).stat().st_size > 1000, name
    assert "Produced by `minicnn evaluate --model shapes_cam`." in text
    assert "## Pointing game" in text and "### Cascade" in text and "## Weak segmentation" in text
    assert "## The max-pool switches" in text and "### Data randomization" in text


def test_the_numbers_equal_the_metrics_computed_directly(run):
    net, results, _, _ = run
    batch = make_shapes(3, seed=SETTINGS.seed)
    maps = method_maps(net, "CAM", batch.images, batch.labels).map
    pointing = {row["method"]: row for row in results.rows["pointing"]}
    assert pointing["CAM"]["hits"] == int(pointing_hits(maps, batch.masks).sum())
    deletion = {row["method"]: row for row in results.rows["deletion"]}["CAM"]
    p_image = softmax(net.forward(batch.images).astype(np.float64))[np.arange(3), batch.labels]
    p_fill = softmax(net.forward(fill_images(batch.images, "blur")).astype(np.float64))[np.arange(3), batch.labels]
    assert deletion["start"] == pytest.approx(p_image.mean(), rel=1e-6)
    assert deletion["end"] == pytest.approx(p_fill.mean(), rel=1e-6)
    cascade = [row for row in results.rows["randomization"] if row["mode"] == "cascade"]
    assert cascade[-1]["layers"] == "fc+conv4+conv3+conv2+conv1"


def test_the_centre_baseline_points_where_the_pointing_games_does():
    maps = baseline_maps("centre", 2, (8, 10))
    assert [pointed_pixel(m) for m in maps] == [pointed_pixel(m) for m in centre_maps(2, (8, 10))] == [(4, 5)] * 2


def test_the_command_line(tmp_path, capsys):
    out = tmp_path / "eval"
    status = cli.main(["evaluate", "--model", "shapes_vgg", "--methods", "gradcam", "cam", "--metrics", "pointing",
                       "--n", "2", "--out", str(out)])
    assert status == 0
    assert [row["method"] for row in read_csv(out / "pointing.csv")] == ["Grad-CAM", "centre", "random"]
    assert "skipped CAM: needs a GlobalAvgPool2d + Linear head" in capsys.readouterr().out


def test_the_command_line_names_a_missing_extra(tmp_path, monkeypatch, capsys):
    real = evaluate_recipe.importlib.util.find_spec
    monkeypatch.setattr(evaluate_recipe.importlib.util, "find_spec",
                        lambda name: None if name == "maxflow" else real(name))
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", "--model", "shapes_vgg", "--metrics", "segmentation", "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "--metrics segmentation needs PyMaxflow: pip install 'minicnn[evaluate]'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--model", "shapes_vgg", "--metrics", "accuracy", "--out", str(tmp_path)])
    assert "--metrics: unknown ['accuracy']" in capsys.readouterr().err


def test_the_data_randomization_test_alone(tmp_path):
    """--modes with no mode: only the trained network and the one trained on permuted labels (here a copy of
    the trained one, so every similarity is 1)."""
    weights = tmp_path / "permuted"
    weights.mkdir()
    for name in ("shapes_vgg.npz", "shapes_vgg.json"):
        (weights / name).write_bytes((WEIGHTS / name).read_bytes())
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--model", "shapes_vgg", "--methods", "gradcam", "--metrics", "randomization",
                     "--modes", "--permuted-weights", str(weights), "--n", "2", "--out", str(out)]) == 0
    rows = read_csv(out / "randomization.csv")
    assert [row["mode"] for row in rows] == ["trained", "data"]
    assert float(rows[1]["spearman_abs"]) == pytest.approx(1.0) and float(rows[1]["ssim"]) == pytest.approx(1.0)


def test_a_model_none_of_whose_methods_applies_is_an_error():
    with pytest.raises(SystemExit, match=r"none of the methods applies to shapes_vgg: CAM needs a GlobalAvgPool2d"):
        cli.main(["evaluate", "--model", "shapes_vgg", "--methods", "cam", "--out", "unused"])
