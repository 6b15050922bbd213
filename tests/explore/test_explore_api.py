"""The explorer's JSON API (Starlette's TestClient, no server): every endpoint equals the library
function on the same input, bad input gets the stated 4xx with the valid names, and the server keeps
serving. Also the two identities of the "every number" view, drawn by hypothesis:
w . x + b written out equals conv2d, and the sum of stamps equals conv_transpose2d."""
import base64
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("starlette")
pytest.importorskip("multipart")
from PIL import Image  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from minicnn import cli, data, explain, ops, user_input  # noqa: E402
from minicnn.explore import numbers  # noqa: E402
from minicnn.explore.app import create_app  # noqa: E402
from minicnn.explore.server import build_explorer  # noqa: E402
from minicnn.explore.state import MAX_UPLOAD_BYTES  # noqa: E402
from minicnn.imagenet import topk  # noqa: E402
from minicnn.plot import signal_picture  # noqa: E402
from minicnn.shapes import receptive_field, receptive_field_box  # noqa: E402
from minicnn.viz.ascent import activation_max  # noqa: E402
from minicnn.viz.attribution import guided_backprop, occlusion, saliency  # noqa: E402
from minicnn.viz.cam import cam, grad_cam, last_conv_layer  # noqa: E402
from minicnn.viz.dissection import dissect  # noqa: E402
from minicnn.viz.search import deconvnet, top_patches  # noqa: E402
from minicnn.testing import conv_geometry  # noqa: E402
from strategies import random_array  # noqa: E402

DATASET_SIZE = 40


@pytest.fixture(scope="module")
def explorer():
    explorer = build_explorer("shapes_vgg", dataset_size=DATASET_SIZE)
    yield explorer
    explorer.close()


@pytest.fixture(scope="module")
def client(explorer):
    with TestClient(create_app(explorer)) as client:
        yield client


def png_bytes(image_chw):
    buffer = io.BytesIO()
    Image.fromarray(np.round(image_chw.transpose(1, 2, 0) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded(array_json):
    """An array from the API's JSON form (list or base64 data)."""
    values = array_json["data"]
    if isinstance(values, str):
        values = np.frombuffer(base64.b64decode(values), dtype="<f4")
    return np.asarray(values, dtype=np.float32).reshape(array_json["shape"])


def wait_for(client, job, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job['id']}").json()
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish")


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    """A shapes image as a PNG of another size (80 x 50): explain and the API both resize it to 64 x 64."""
    folder = tmp_path_factory.mktemp("upload")
    path = folder / "shape.png"
    picture = data.make_shapes(1, seed=99).images[0]
    Image.fromarray(np.round(picture.transpose(1, 2, 0) * 255).astype(np.uint8)).resize((80, 50)).save(path)
    return path


def network_input(path):
    """(1, 3, 64, 64) as `minicnn explain` makes it from the file."""
    image, _ = user_input.read_image(path)
    return user_input.shapes_input(image, path)[0]


# ----------------------------------------------------------------------------------------------
# each endpoint equals the library


def test_model_lists_every_layer_with_its_output_shape_and_the_classes(client, explorer):
    answer = client.get("/api/model").json()
    x = np.zeros((1, 3, 64, 64), np.float32)
    outputs = explorer.net.activations(x, explorer.net.names)
    assert [layer["name"] for layer in answer["layers"]] == explorer.net.names
    assert all(tuple(layer["shape"]) == outputs[layer["name"]].shape[1:] for layer in answer["layers"])
    assert answer["classes"] == list(data.CLASS_NAMES)
    assert answer["name"] == "shapes_vgg"
    assert set(answer["methods"]) == set(explain.METHODS)


def test_predict_equals_the_top5_minicnn_explain_prints(client, explorer, upload, tmp_path, capsys):
    answer = client.post("/api/predict", files={"image": ("shape.png", upload.read_bytes(), "image/png")}).json()
    expected = topk(explorer.net.forward(network_input(upload))[0], 5, data.CLASS_NAMES)
    assert [(row["class"], row["probability"]) for row in answer["top5"]] == expected
    assert cli.main(["explain", str(upload), "--methods", "saliency", "--out", str(tmp_path / "e.png")]) == 0
    printed = re.findall(r"^\s+\d\. (\S+)\s+([\d.]+)%$", capsys.readouterr().out, flags=re.M)
    assert [name for name, _ in printed] == [row["class"] for row in answer["top5"]]
    assert [float(p) for _, p in printed] == [round(100 * row["probability"], 2) for row in answer["top5"]]
    assert answer["image"]["notes"] and "resized to 64x64" in answer["image"]["notes"][0]


@pytest.mark.parametrize("method", ["saliency", "guided", "gradcam", "cam"])
def test_maps_equal_the_viz_functions(client, explorer, upload, method):
    x = network_input(upload)
    image_id = client.post("/api/images", files={"image": ("shape.png", upload.read_bytes())}).json()["id"]
    answer = client.post("/api/maps", data={"image_id": image_id, "target": "ring", "method": method}).json()
    target = data.CLASS_NAMES.index("ring")
    net, cam_net = explorer.net, explorer.cam_net
    expected = {"saliency": lambda: saliency(net, x, target).map[0],
                "guided": lambda: guided_backprop(net, x, target).map[0],
                "gradcam": lambda: grad_cam(net, x, target, last_conv_layer(net)).upsampled[0],
                "cam": lambda: cam(cam_net, x, target).upsampled[0]}[method]()
    assert answer["target"] == target and answer["class"] == "ring"
    np.testing.assert_array_equal(decoded(answer["map"]), expected)
    png = client.get(answer["png"])
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (64, 64)


def test_occlusion_runs_as_a_job_with_progress_and_equals_the_viz_function(client, explorer):
    answer = client.post("/api/maps", data={"image_id": "dataset-2", "method": "occlusion", "target": "3"})
    assert answer.status_code == 202
    status = wait_for(client, answer.json()["job"])
    assert status["state"] == "done" and status["done"] == status["total"] == 14 * 14
    expected = occlusion(explorer.net, explorer.dataset.inputs[2:3], 3, 12, 4, progress=False).heatmap[0]
    np.testing.assert_array_equal(decoded(status["map"]), expected.astype(np.float32))


@pytest.mark.parametrize("encoding", ["list", "base64"])
def test_activations_equal_the_forward_pass_for_a_dataset_or_posted_image(client, explorer, upload, encoding):
    answer = client.get(f"/api/layers/relu2_1/activations?image_id=dataset-5&encoding={encoding}").json()
    expected = explorer.net.forward(explorer.dataset.inputs[5:6], upto="relu2_1")[0]
    np.testing.assert_array_equal(decoded(answer["activations"]), expected)
    posted = client.post("/api/layers/conv1_1/activations", files={"image": ("s.png", upload.read_bytes())}).json()
    np.testing.assert_array_equal(decoded(posted["activations"]),
                                  explorer.net.forward(network_input(upload), upto="conv1_1")[0])


def test_unit_patches_equal_top_patches_best_first(client, explorer):
    answer = client.get("/api/units/relu2_2/3").json()
    expected = top_patches(explorer.net, explorer.dataset.inputs, "relu2_2", 3, k=9, progress=False)
    assert len(answer["patches"]) == 9
    assert [(p["image"], tuple(p["position"]), p["activation"], tuple(p["box"])) for p in answer["patches"]] == [
        (f"dataset-{hit.index}", hit.position, hit.activation, hit.box) for hit in expected]
    activations = [p["activation"] for p in answer["patches"]]
    assert activations == sorted(activations, reverse=True)
    crop = Image.open(io.BytesIO(client.get(answer["patches"][0]["patch_png"]).content))
    np.testing.assert_array_equal(np.asarray(crop), np.round(expected[0].crop.transpose(1, 2, 0) * 255))
    deconv = Image.open(io.BytesIO(client.get(answer["patches"][0]["deconv_png"]).content))
    reconstruction = deconvnet(explorer.net, explorer.dataset.inputs[expected[0].index][None], "relu2_2", 3).crop
    np.testing.assert_array_equal(np.asarray(deconv), np.round(signal_picture(reconstruction).transpose(1, 2, 0) * 255))


def test_dissection_of_a_unit_equals_dissect_on_the_same_images(client, explorer):
    job = client.get("/api/layers/relu1_2/dissection").json()["dissection"]
    for _ in range(600):
        if job["state"] in ("done", "error"):
            break
        time.sleep(0.05)
        job = client.get("/api/layers/relu1_2/dissection").json()["dissection"]
    expected = dissect(explorer.net, explorer.dataset.shapes_batch, "relu1_2", progress=False).table[4]
    row = client.get("/api/units/relu1_2/4").json()["dissection"]["units"][0]
    assert (row["unit"], row["concept"], row["iou"], row["is_detector"]) == tuple(expected)


def test_gradient_ascent_runs_as_a_job_and_equals_activation_max(client, explorer):
    answer = client.post("/api/units/relu3_1/2/ascent")
    assert answer.status_code == 202
    status = wait_for(client, answer.json()["job"])
    assert status["state"] == "done" and status["done"] == status["total"] == 200
    expected = activation_max(explorer.net, "relu3_1", 2, progress=False)
    np.testing.assert_array_equal(status["objective"], expected.objective)
    picture = np.asarray(Image.open(io.BytesIO(client.get(status["png"]).content)))
    np.testing.assert_array_equal(picture, np.round(np.clip(expected.image, 0, 1).transpose(1, 2, 0) * 255))


# ----------------------------------------------------------------------------------------------
# every number


@pytest.mark.parametrize("layer, position", [("conv1_1", (0, 0)), ("conv1_1", (30, 63)), ("relu2_1", (7, 5)),
                                             ("conv3_2", (15, 0))])
def test_every_number_w_dot_x_plus_b_equals_the_activation(client, explorer, layer, position):
    i, j = position
    answer = client.get(f"/api/numbers/{layer}?image_id=dataset-1&channel=2&i={i}&j={j}").json()
    conv = explorer.conv_of(layer)
    x = explorer.dataset.inputs[1:2]
    np.testing.assert_allclose(answer["sum"], answer["activation"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(answer["sum"], explorer.net.forward(x, upto=conv)[0, 2, i, j], rtol=1e-5, atol=1e-6)
    assert answer["relu"] == (layer != conv)
    shown = explorer.net.forward(x, upto=layer)[0, 2, i, j]  # the map clicked: after the ReLU for relu2_1
    np.testing.assert_allclose(max(answer["sum"], 0) if answer["relu"] else answer["sum"], shown, rtol=1e-5, atol=1e-6)
    weight = explorer.net[conv].params["weight"][2]
    np.testing.assert_array_equal(np.asarray(answer["weights"], np.float32), weight)
    products = np.asarray(answer["products"])
    np.testing.assert_array_equal(products, np.asarray(answer["weights"]) * np.asarray(answer["inputs"]))
    assert answer["bias"] == float(explorer.net[conv].params["bias"][2])
    field = receptive_field(explorer.net, upto=conv)[-1]
    assert tuple(answer["receptive_field"]) == receptive_field_box(field, i, j, (64, 64))


@settings(max_examples=40, deadline=None)
@given(geometry=conv_geometry(max_batch=1), seed=st.integers(0, 2**32 - 1), data_draw=st.data())
def test_dot_product_written_out_equals_conv2d(geometry, seed, data_draw):
    x_shape, w_shape, stride, padding = geometry
    x, w = random_array(seed, x_shape), random_array(seed + 1, w_shape)
    b = random_array(seed + 2, (w_shape[0],))
    y = ops.conv2d(x, w, b, stride, padding)[0]
    f = data_draw.draw(st.integers(0, y.shape[0] - 1))
    i, j = data_draw.draw(st.integers(0, y.shape[1] - 1)), data_draw.draw(st.integers(0, y.shape[2] - 1))
    terms = numbers.dot_product(x[0], w, b, stride, padding, f, i, j)
    np.testing.assert_allclose(terms.value, y[f, i, j], rtol=1e-10, atol=1e-10)
    assert (terms.inputs[:, terms.padded] == 0).all()


@settings(max_examples=40, deadline=None)
@given(geometry=conv_geometry(max_batch=1), seed=st.integers(0, 2**32 - 1), keep=st.floats(0.2, 1.0))
def test_sum_of_stamps_equals_conv_transpose2d(geometry, seed, keep):
    x_shape, w_shape, stride, padding = geometry
    w = random_array(seed + 1, w_shape)
    y_shape = ops.conv2d(np.zeros(x_shape), w, None, stride, padding).shape
    y = random_array(seed, y_shape) * (np.random.default_rng(seed).random(y_shape) < keep)
    output_padding = tuple(n - ((m - 1) * s - 2 * p + k) for n, m, s, p, k in
                           zip(x_shape[2:], y_shape[2:], stride, padding, w_shape[2:]))
    expected = ops.conv_transpose2d(y, w, None, stride, padding, output_padding)[0]
    printed, total = numbers.stamps(y[0], w, stride, padding, x_shape[2:])
    np.testing.assert_allclose(total, expected, rtol=1e-10, atol=1e-10)
    assert len(printed) == np.count_nonzero(y)
    assert all(np.array_equal(s.stamp, s.value * w[s.f]) for s in printed)


def test_stamping_view_equals_conv_transpose2d(client):
    answer = client.get("/api/stamps/conv1_2?image_id=dataset-0&channel=1&i=20&j=30&size=2").json()
    assert len(answer["stamps"]) == 4
    np.testing.assert_allclose(decoded(answer["sum"]), decoded(answer["conv_transpose2d"]), atol=1e-5)
    assert answer["max_difference"] < 1e-5


# ----------------------------------------------------------------------------------------------
# bad input


def test_a_non_image_and_a_too_large_upload_get_4xx_and_the_server_keeps_serving(client):
    answer = client.post("/api/predict", files={"image": ("notes.png", b"this is not an image", "image/png")})
    assert answer.status_code == 415 and "notes.png is not an image" in answer.json()["error"]
    assert "/tmp" not in answer.json()["error"]
    huge = client.post("/api/predict", files={"image": ("big.png", b"\0" * (MAX_UPLOAD_BYTES + 1), "image/png")})
    assert huge.status_code == 413 and str(MAX_UPLOAD_BYTES) in huge.json()["error"]
    assert client.post("/api/predict", data={"image_id": "dataset-0"}).status_code == 200


@pytest.mark.parametrize("request_args, named", [
    (("get", "/api/units/conv9/1"), "relu3_2"),
    (("get", "/api/units/fc1/1"), "pool3"),             # no feature map: not a unit with patches
    (("get", "/api/units/relu1_1/8"), "0 to 7"),
    (("get", "/api/units/relu1_1/x"), "integer"),
    (("get", "/api/layers/nope/activations?image_id=dataset-0"), "relu_fc1"),
    (("get", "/api/layers/conv1_1/activations?image_id=dataset-999"), "dataset-39"),
    (("get", "/api/numbers/pool1?image_id=dataset-0&channel=0&i=0&j=0"), "conv1_1"),
    (("get", "/api/numbers/conv1_1?image_id=dataset-0&channel=0&i=64&j=0"), "rows 0 to 63"),
    (("get", "/api/units/relu1_1/1/patches/9.png"), "0 to 8"),
    (("post", "/api/maps", {"image_id": "dataset-0", "target": "dog", "method": "saliency"}), "checker_patch"),
    (("post", "/api/maps", {"image_id": "dataset-0", "method": "lime"}), "gradcam"),
])
def test_unknown_names_get_404_naming_the_valid_ones(client, request_args, named):
    method, url, *form = request_args
    answer = getattr(client, method)(url, **({"data": form[0]} if form else {}))
    assert answer.status_code == 404
    assert named in answer.json()["error"]


def test_unknown_routes_and_missing_images_answer_json(client):
    assert client.get("/api/nothing").status_code == 404
    answer = client.post("/api/predict", data={})
    assert answer.status_code == 400 and "image" in answer.json()["error"]


def test_two_clients_at_once_each_get_their_own_answers(explorer, upload):
    """Two tabs: concurrent requests on different images, each answer equal to the one alone."""
    app = create_app(explorer)
    alone = {}
    with TestClient(app) as client:
        for n in range(4):
            alone[n] = client.get(f"/api/layers/relu1_2/activations?image_id=dataset-{n}").json()["activations"]
    results, errors = {}, []

    def tab(numbers_):
        try:
            with TestClient(app) as client:
                for _ in range(5):
                    for n in numbers_:
                        answer = client.get(f"/api/layers/relu1_2/activations?image_id=dataset-{n}")
                        results.setdefault(n, []).append(answer.json()["activations"])
        except Exception as error:  # reported below
            errors.append(error)
    tabs = [threading.Thread(target=tab, args=([0, 1],)), threading.Thread(target=tab, args=([2, 3],))]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join()
    assert not errors
    assert all(answer == alone[n] for n, answers in results.items() for answer in answers)
    assert sum(len(answers) for answers in results.values()) == 20


def test_a_camera_frame_returns_top5_map_and_activations_in_one_answer(client, explorer, upload):
    frame = client.post("/api/frame", files={"image": ("f.png", upload.read_bytes())},
                        data={"method": "cam", "layer": "relu1_1", "encoding": "base64"}).json()
    x = network_input(upload)
    assert [(r["class"], r["probability"]) for r in frame["top5"]] == topk(explorer.net.forward(x)[0], 5,
                                                                           data.CLASS_NAMES)
    top1 = data.CLASS_NAMES.index(frame["top5"][0]["class"])
    np.testing.assert_array_equal(decoded(frame["map"]), cam(explorer.cam_net, x, top1).upsampled[0])
    np.testing.assert_array_equal(decoded(frame["activations"]), explorer.net.forward(x, upto="relu1_1")[0])


# ----------------------------------------------------------------------------------------------
# datasets: a folder of images, an index


def test_images_folder_is_searched_on_the_spot(tmp_path):
    batch = data.make_shapes(6, seed=5)
    for n, image in enumerate(batch.images):
        Image.open(io.BytesIO(png_bytes(image))).save(tmp_path / (f"img{n}.png" if n % 2 else f"img{n}.jpg"))
    (tmp_path / "readme.txt").write_text("not an image: ignored")
    explorer = build_explorer("shapes_vgg", images=tmp_path)
    try:
        with TestClient(create_app(explorer)) as client:
            answer = client.get("/api/units/relu2_1/0").json()
            names = client.get("/api/dataset").json()["images"]
        assert [image["name"] for image in names] == [f"img{n}.{'png' if n % 2 else 'jpg'}" for n in range(6)]
        inputs = np.concatenate([network_input(tmp_path / image["name"]) for image in names])
        expected = top_patches(explorer.net, inputs, "relu2_1", 0, k=9, progress=False)
        assert [(p["image"], p["activation"]) for p in answer["patches"]] == [
            (f"dataset-{hit.index}", hit.activation) for hit in expected]
        assert answer["dissection"]["state"] == "unknown"
    finally:
        explorer.close()


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory):
    from minicnn.index import ModelSpec, ShapesSource, build_index

    folder = tmp_path_factory.mktemp("index") / "idx"
    build_index(ModelSpec("shapes_vgg"), ShapesSource(50, seed=3), ["relu2_2"], folder, k=9, progress=False)
    return folder


def test_an_index_gives_each_unit_its_top_hits_and_their_pictures(index_folder):
    from minicnn.index import load_index

    index = load_index(index_folder)
    explorer = build_explorer("shapes_vgg", index=index_folder)
    try:
        with TestClient(create_app(explorer)) as client:
            answer = client.get("/api/units/relu2_2/4").json()
            assert [(p["image"], tuple(p["position"]), p["activation"], tuple(p["box"])) for p in answer["patches"]] == [
                (f"dataset-{hit.image_id}", hit.position, hit.activation, hit.box) for hit in index.top("relu2_2", 4)]
            crop = np.asarray(Image.open(io.BytesIO(client.get(answer["patches"][0]["patch_png"]).content)))
            np.testing.assert_array_equal(crop, np.round(index.crops("relu2_2", 4)[0].transpose(1, 2, 0) * 255))
            deconv = np.asarray(Image.open(io.BytesIO(client.get(answer["patches"][0]["deconv_png"]).content)))
            expected = index.deconvnet(explorer.net, "relu2_2", 4)[0].crop
            np.testing.assert_array_equal(deconv, np.round(signal_picture(expected).transpose(1, 2, 0) * 255))
            missing = client.get("/api/units/relu1_1/0")
            assert missing.status_code == 404 and "indexed layers are: relu2_2" in missing.json()["error"]
            assert client.get("/api/dataset").json()["count"] == 50
            shown = np.asarray(Image.open(io.BytesIO(client.get("/api/images/dataset-3.png").content)))
            np.testing.assert_array_equal(shown, np.round(index.display(3).transpose(1, 2, 0) * 255))
    finally:
        explorer.close()


def test_an_index_of_another_model_is_one_clear_error(index_folder):
    with pytest.raises(user_input.UserError, match="indexes shapes_vgg, not the shapes_cam"):
        build_explorer("shapes_cam", index=index_folder)


def test_an_imagenet_model_runs_through_the_same_api(tmp_path):
    """AlexNet (random weights: the API's code, not ImageNet's answers) on two images of other sizes:
    explain's resize and centre crop, the top-5, a strided conv's numbers, units, and no CAM."""
    from minicnn.explore.server import folder_dataset
    from minicnn.explore.state import Explorer
    from minicnn.imagenet import IMAGENET_CLASSES
    from minicnn.models import alexnet

    rng = np.random.default_rng(0)
    for name, size in (("wide.png", (300, 200)), ("square.jpg", (256, 256))):
        Image.fromarray(rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)).save(tmp_path / name)
    net = alexnet(seed=0)
    explorer = Explorer("alexnet", net, None, IMAGENET_CLASSES, "torch")
    explorer.dataset = folder_dataset(tmp_path, explorer.network_input)
    try:
        with TestClient(create_app(explorer)) as client:
            answer = client.post("/api/predict", files={"image": ("wide.png", (tmp_path / "wide.png").read_bytes())})
            x = user_input.imagenet_input(user_input.read_image(tmp_path / "wide.png")[0], "torch")[0]
            assert [(r["class"], r["probability"]) for r in answer.json()["top5"]] == topk(net.forward(x)[0], 5)
            assert any("enlarged" in note for note in answer.json()["image"]["notes"])
            numbers_ = client.get("/api/numbers/features_1?image_id=dataset-1&channel=7&i=10&j=20").json()
            value = net.forward(explorer.dataset.input(1), upto="features_0")[0, 7, 10, 20]
            np.testing.assert_allclose(numbers_["sum"], value, rtol=1e-4, atol=1e-4)
            assert numbers_["rows"] == list(range(10 * 4 - 2, 10 * 4 - 2 + 11))   # stride 4, padding 2, 11 x 11
            units = client.get("/api/units/features_4/3").json()["patches"]
            expected = top_patches(net, explorer.dataset.inputs, "features_4", 3, k=9, progress=False)
            assert [(p["image"], p["activation"]) for p in units] == [(f"dataset-{h.index}", h.activation)
                                                                       for h in expected]
            assert client.get("/api/model").json()["methods"] == ["saliency", "occlusion", "gradcam", "guided"]
            assert client.post("/api/maps", data={"image_id": "dataset-0", "method": "cam"}).status_code == 404
    finally:
        explorer.close()


# ----------------------------------------------------------------------------------------------
# the command


def test_missing_web_framework_is_one_line_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    assert cli.main(["explore", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == 'minicnn explore: error: the explorer needs Starlette and uvicorn: pip install "minicnn[explore]"'


def test_the_command_prints_its_url_serves_on_127_0_0_1_and_stops_on_ctrl_c():
    pytest.importorskip("uvicorn")
    import httpx

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    process = subprocess.Popen([sys.executable, "-m", "minicnn", "explore", "--no-browser", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+/)", line).group(1)
        for _ in range(200):
            try:
                answer = httpx.get(url + "api/model", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer.status_code == 200 and answer.json()["name"] == "shapes_vgg"
        assert "<html" in httpx.get(url, timeout=5).text.lower()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
