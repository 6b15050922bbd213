"""Keras 3 writes VGG16 (random weights) as .weights.h5 and as the legacy .h5; minicnn reads both
without Keras, recognises them as Keras' VGG16 and computes the same scores on one image.

Keras runs in a child process (KERAS_BACKEND=torch must be set before keras is imported); this
process never imports it. VGG16 is 528 MB, so this is one slow test.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minicnn.io import load_weights
from minicnn.models import is_keras_vgg16, load_imagenet_model

REPO = Path(__file__).resolve().parents[2]

KERAS_WRITES_VGG16 = r"""
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np
import keras
folder = sys.argv[1]
keras.utils.set_random_seed(0)
model = keras.applications.VGG16(weights=None, classifier_activation=None)   # scores, not probabilities
model.save_weights(os.path.join(folder, "vgg16.weights.h5"))
model.save(os.path.join(folder, "vgg16.h5"))
# an input as caffe-mode preprocessing gives it: BGR, 0-255 minus the mean, channels last
x = np.random.default_rng(0).uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32)
scores = keras.ops.convert_to_numpy(model(x, training=False))
np.savez(os.path.join(folder, "keras.npz"), x=x, scores=scores)
"""


@pytest.fixture(scope="module")
def keras_vgg16_files(tmp_path_factory):
    if importlib.util.find_spec("keras") is None:   # not imported here: its backend is chosen at import
        pytest.skip("keras is not installed")
    if importlib.util.find_spec("torch") is None:   # Keras runs on its torch backend here (KERAS_BACKEND=torch)
        pytest.skip("torch is not installed (the test oracle: pip install torch==2.13.0)")
    pytest.importorskip("h5py")
    folder = tmp_path_factory.mktemp("keras_vgg16")
    subprocess.run([sys.executable, "-c", KERAS_WRITES_VGG16, str(folder)], check=True, timeout=900,
                   capture_output=True)
    with np.load(folder / "keras.npz") as saved:
        return folder, saved["x"], saved["scores"]


@pytest.mark.slow
@pytest.mark.parametrize("file", ["vgg16.weights.h5", "vgg16.h5"])
def test_keras3_vgg16_gives_keras_scores(keras_vgg16_files, file):
    folder, x, want = keras_vgg16_files
    state = load_weights(folder / file)
    assert is_keras_vgg16(state)
    assert "block5_conv3.weight" in state and "predictions.bias" in state
    del state
    net = load_imagenet_model("vgg16", folder / file).eval()
    got = net(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    assert got.shape == want.shape == (1, 1000)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
