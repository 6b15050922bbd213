"""Dataset search, DeconvNet and filter tiles, each checked by the identity that defines it.

- top_patches   == brute force: forward the whole set at once, max and argmax per image, sort;
                the same answer whatever the batching (hypothesis);
                each box == the receptive field worked out BY HAND for the test network (and ==
                shapes.receptive_field_box); each crop == the image's pixels in that box;
                every pixel inside the box can change the unit, no pixel outside it can (bit-identical)
- deconvnet     the backward pass starts from exactly one non-zero, the channel's maximum;
                the reconstruction is zero outside the receptive field of that position;
                == the same rules written in torch (a ReLU whose backward is relu(grad), torch's
                max-pool backward for un-pooling, autograd's conv backward for W^T)
- filters_grid  tiles are each filter's weights under an increasing affine map onto [0, 1]
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, Network, ReLU
from minicnn.shapes import receptive_field, receptive_field_box
from minicnn.viz.filters import filters_grid, min_max_per_filter
from minicnn.viz.search import (
    deconvnet,
    max_activation_seed,
    top_patches,
    top_patches_for_channels,
)
from strategies import random_array

torch = pytest.importorskip("torch")
F = torch.nn.functional
SIZE = 12  # test images are (N, 3, 12, 12)

# The receptive field of each layer of small_net(), worked out by hand with r_l = r_{l-1} + (k-1) j_{l-1},
# j_l = j_{l-1} s_l, a_l = a_{l-1} - p_l j_{l-1}:  conv1 (3, 1, -1); pool1 k3 s2 p1 (5, 2, -2);
# conv2 k3 p1 (5 + 2*2 = 9, 2, -2 - 2 = -4).  (size, jump, start), the same along both axes.
HAND_FIELDS = {"conv1": (3, 1, -1), "relu1": (3, 1, -1), "pool1": (5, 2, -2), "conv2": (9, 2, -4), "relu2": (9, 2, -4)}


def small_net(seed=0, pool=MaxPool2d):
    """conv-relu-pool(3, stride 2, padding 1: overlapping windows)-conv-relu, then a head; float64."""
    net = Network([
        ("conv1", Conv2d(3, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", pool(3, stride=2, padding=1)),
        ("conv2", Conv2d(4, 5, 3, padding=1)), ("relu2", ReLU()),
        ("flatten", Flatten()), ("fc", Linear(5 * 6 * 6, 3)),
    ], seed=seed).astype(np.float64)
    return with_biases(net, seed)


def block_net(seed=0):
    """A VGG-like block (conv-relu-conv-relu-maxpool 2x2) then a stride-2 conv; float64."""
    net = Network([
        ("conv1", Conv2d(3, 4, 3, padding=1)), ("relu1", ReLU()), ("conv2", Conv2d(4, 4, 3, padding=1)),
        ("relu2", ReLU()), ("pool", MaxPool2d(2)), ("conv3", Conv2d(4, 6, 3, stride=2, padding=1)), ("relu3", ReLU()),
    ], seed=seed).astype(np.float64)
    return with_biases(net, seed)


def with_biases(net, seed, positive=False):
    """Random biases (zero biases would hide mistakes); positive=True: all weights and biases > 0."""
    state = net.state_dict()
    for key, value in state.items():
        if key.endswith("bias"):
            state[key] = random_array(seed + 1, value.shape) * 0.3
        if positive:
            state[key] = np.abs(state[key]) + 0.01
    return net.load_state_dict(state)


def images(seed, n=20):
    return np.random.default_rng(seed).random((n, 3, SIZE, SIZE))


def hand_box(layer, i, j):
    """The box of unit (i, j) from HAND_FIELDS, clipped to the image: (top, bottom, left, right)."""
    size, jump, start = HAND_FIELDS[layer]
    top, left = start + i * jump, start + j * jump
    return max(top, 0), min(top + size, SIZE), max(left, 0), min(left + size, SIZE)


def brute_force(net, x, layer, channel, k):
    """Forward everything at once; per image the max over positions and its first argmax; sort."""
    maps = net.forward(x, upto=layer)[:, channel]
    flat = maps.reshape(len(x), -1)
    values, winners = flat.max(axis=1), flat.argmax(axis=1)
    order = sorted(range(len(x)), key=lambda n: (-values[n], n))[:k]
    return [(n, tuple(int(v) for v in np.unravel_index(winners[n], maps.shape[1:])), values[n]) for n in order]


def assert_same_hits(patches, expected):
    assert [(p.index, p.position) for p in patches] == [(n, pos) for n, pos, _ in expected]
    np.testing.assert_allclose([p.activation for p in patches], [v for _, _, v in expected], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# dataset search


@pytest.mark.parametrize("layer, channel, k", [("relu2", 0, 9), ("relu2", 3, 5), ("pool1", 2, 9), ("conv1", 1, 30)])
def test_top_patches_equals_brute_force_over_the_whole_set(layer, channel, k):
    net, x = small_net(1), images(1)
    patches = top_patches(net, x, layer, channel, k=k, batch_size=6, progress=False)
    assert len(patches) == min(k, len(x))
    assert_same_hits(patches, brute_force(net, x, layer, channel, k))
    activations = [p.activation for p in patches]
    assert activations == sorted(activations, reverse=True)


def test_the_score_is_the_maximum_not_the_sum():
    """The forum's example as two channels of data: the image whose map SUMS higher is not the one with
    the highest single activation, and top_patches ranks by the maximum."""
    net = Network([("conv", Conv2d(1, 1, 1, bias=False))]).astype(np.float64)
    net["conv"].params["weight"][...] = 1.0  # the identity: the 'feature map' is the image itself
    x = np.zeros((2, 1, 6, 6))
    x[0, 0, :, 1:3] = 30.0   # two columns of 30: sum 360, max 30
    x[1, 0, 2, 4] = 50.0     # one bright pixel: sum 50, max 50
    hits = top_patches(net, x, "conv", 0, k=2, progress=False)
    assert x[0].sum() > x[1].sum() and [p.index for p in hits] == [1, 0]
    assert hits[0].position == (2, 4) and hits[0].activation == 50.0


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 25), st.lists(st.integers(1, 24), min_size=1, max_size=4),
       st.integers(1, 10), st.sampled_from(["relu2", "pool1"]))
def test_streaming_gives_the_same_result_for_any_batching(seed, batch_size, cuts, k, layer):
    """One array with any batch_size, or the set handed over as an iterable of uneven chunks."""
    net, x = small_net(seed % 7), images(seed, 24)
    expected = brute_force(net, x, layer, 1, k)
    edges = sorted(set(cuts))
    chunks = (x[a:b] for a, b in zip([0] + edges, edges + [len(x)]) if b > a)  # a generator: read once
    for patches in (top_patches(net, x, layer, 1, k=k, batch_size=batch_size, progress=False),
                    top_patches(net, chunks, layer, 1, k=k, batch_size=batch_size, progress=False)):
        assert_same_hits(patches, expected)
        for p in patches:
            top, bottom, left, right = p.box
            np.testing.assert_array_equal(p.crop, x[p.index][:, top:bottom, left:right])


def test_one_pass_for_several_channels_equals_one_search_per_channel():
    net, x = small_net(2), images(2)
    together = top_patches_for_channels(net, x, "relu2", [0, 2, 4], k=4, batch_size=7, progress=False)
    for channel, patches in together.items():
        assert_same_hits(patches, brute_force(net, x, "relu2", channel, 4))


@pytest.mark.parametrize("layer", ["relu2", "pool1", "conv1"])
def test_each_crop_is_the_receptive_field_box_worked_out_by_hand(layer):
    net, x = small_net(3), images(3)
    field = receptive_field(net, upto=layer)[-1]
    size, jump, start = HAND_FIELDS[layer]
    assert (field.size, field.jump, field.start) == ((size, size), (jump, jump), (start, start))
    for channel in range(2):
        for p in top_patches(net, x, layer, channel, k=9, progress=False):
            i, j = p.position
            assert p.box == hand_box(layer, i, j) == receptive_field_box(field, i, j, (SIZE, SIZE))
            top, left = start + i * jump, start + j * jump
            assert p.unclipped_box == (top, top + size, left, left + size)
            top, bottom, left, right = p.box
            assert p.crop.shape == (3, bottom - top, right - left)
            np.testing.assert_array_equal(p.crop, x[p.index][:, top:bottom, left:right])


def test_every_pixel_in_the_box_can_change_the_unit_and_no_pixel_outside_can():
    """All weights and biases positive, all pixels positive: raising one pixel inside the box raises the
    unit (through every max-pool window it reaches); setting EVERY pixel outside the box to huge values
    leaves the unit bit-identical."""
    net, x = with_biases(small_net(4), 4, positive=True), images(4)
    for p in top_patches(net, x, "relu2", 2, k=3, progress=False):
        i, j = p.position
        top, bottom, left, right = p.box
        image = x[p.index]
        before = net.forward(image[None], upto="relu2")[0, 2, i, j]

        outside = np.ones((SIZE, SIZE), dtype=bool)
        outside[top:bottom, left:right] = False
        far = image.copy()
        far[:, outside] = np.random.default_rng(0).uniform(50, 100, size=(3, outside.sum()))
        assert net.forward(far[None], upto="relu2")[0, 2, i, j] == before

        inside = [(c, r, s) for c in range(3) for r in range(top, bottom) for s in range(left, right)]
        pushed = np.repeat(image[None], len(inside), axis=0)
        for n, (c, r, s) in enumerate(inside):
            pushed[n, c, r, s] += 100.0
        assert (net.forward(pushed, upto="relu2")[:, 2, i, j] > before).all()


def test_the_gradient_of_a_unit_lives_exactly_on_its_box():
    """A ones seed at (i, j), positive weights: with average pooling every pixel of the box gets a
    non-zero gradient and none outside; with max-pool (only the switches pass) none outside."""
    x = images(5, 1)
    for pool in (AvgPool2d, MaxPool2d):
        net = with_biases(small_net(5, pool), 5, positive=True)
        field = receptive_field(net, upto="relu2")[-1]
        for i, j in [(0, 0), (2, 3), (5, 5), (0, 4)]:
            output = net.forward(x, upto="relu2")
            seed = np.zeros_like(output)
            seed[0, 1, i, j] = 1.0
            support = (net.backward(seed, upto="relu2", param_grads=False)[0] != 0).any(axis=0)
            box = np.zeros((SIZE, SIZE), dtype=bool)
            top, bottom, left, right = receptive_field_box(field, i, j, (SIZE, SIZE))
            box[top:bottom, left:right] = True
            assert not support[~box].any()
            if pool is AvgPool2d:
                np.testing.assert_array_equal(support, box)


def test_any_iterable_of_batches_and_shapesbatch_like_objects():
    class Batch:  # anything with an .images array, like minicnn.data.ShapesBatch
        def __init__(self, images):
            self.images = images

    net, x = small_net(6), images(6)
    expected = brute_force(net, x, "relu2", 0, 9)
    assert_same_hits(top_patches(net, [Batch(x[:5]), x[5:11], Batch(x[11:])], "relu2", 0, progress=False), expected)
    assert_same_hits(top_patches(net, Batch(x), "relu2", 0, progress=False), expected)
    assert_same_hits(top_patches(net, iter(list(x)), "relu2", 0, batch_size=4, progress=False), expected)


# ----------------------------------------------------------------------------------------------
# DeconvNet


def firing_channel(net, x, layer):
    """The channel with the largest maximum at `layer` (so the unit fires, if any does)."""
    return int(net.forward(x, upto=layer).max(axis=(0, 2, 3)).argmax())


@pytest.mark.parametrize("layer", ["relu2", "pool1", "conv2"])
def test_deconvnet_starts_from_exactly_one_nonzero_the_maximum(layer, monkeypatch):
    net, x = small_net(3), images(7, 1)
    channel = firing_channel(net, x, layer)
    activation = net.forward(x, upto=layer)
    assert activation[0, channel].max() > 0
    captured = []
    backward = net.backward
    monkeypatch.setattr(net, "backward", lambda grad, **kw: captured.append((grad.copy(), kw)) or backward(grad, **kw))
    result = deconvnet(net, x, layer, channel)

    (grad, kwargs), = captured
    assert kwargs["rule"] == "deconvnet" and kwargs["upto"] == layer and kwargs.get("after") is None
    assert np.count_nonzero(grad) == 1
    (n, c, i, j), = np.argwhere(grad)
    assert (n, c) == (0, channel) and (i, j) == result.position
    assert grad[0, c, i, j] == activation[0, channel].max() == result.activation
    assert (i, j) == np.unravel_index(activation[0, channel].argmax(), activation.shape[2:])
    seed, position = max_activation_seed(activation, channel)
    np.testing.assert_array_equal(seed, grad)
    assert position == result.position


@pytest.mark.parametrize("make_net, layer", [(small_net, "relu2"), (small_net, "pool1"), (block_net, "relu3"),
                                             (block_net, "pool")])
def test_deconvnet_is_zero_outside_the_receptive_field(make_net, layer):
    net = make_net(8)
    for seed in range(3):
        x = images(10 + seed, 1)
        result = deconvnet(net, x, layer, firing_channel(net, x, layer))
        top, bottom, left, right = result.box
        outside = np.ones((SIZE, SIZE), dtype=bool)
        outside[top:bottom, left:right] = False
        assert result.reconstruction.shape == (3, SIZE, SIZE)
        assert not result.reconstruction[:, outside].any()
        assert result.crop.any()
        np.testing.assert_array_equal(result.crop, result.reconstruction[:, top:bottom, left:right])


class DeconvReLU(torch.autograd.Function):
    """ReLU forward; backward is ReLU of the incoming signal, ignoring the forward input (Zeiler & Fergus)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


def torch_deconvnet(net, x, layer, channel):
    """The same network by hand in torch from net.state_dict(); max-pool's backward routes the signal
    to each window's maximum (un-pooling with switches), conv's backward is W^T."""
    state = {k: torch.tensor(v) for k, v in net.state_dict().items()}
    tx = torch.tensor(x, requires_grad=True)
    out = tx
    for name in net.names[: net.names.index(layer) + 1]:
        layer_ = net[name]
        if isinstance(layer_, Conv2d):
            out = F.conv2d(out, state[f"{name}.weight"], state[f"{name}.bias"], layer_.stride, layer_.padding)
        elif isinstance(layer_, ReLU):
            out = DeconvReLU.apply(out)
        elif isinstance(layer_, MaxPool2d):
            out = F.max_pool2d(out, layer_.kernel_size, layer_.stride, layer_.padding)
        else:
            raise NotImplementedError(type(layer_).__name__)
    plane = out.detach()[0, channel]
    i, j = np.unravel_index(int(torch.argmax(plane)), plane.shape)
    seed = torch.zeros_like(out)
    seed[0, channel, i, j] = plane[i, j]
    out.backward(seed)
    return tx.grad.numpy(), (int(i), int(j))


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([(small_net, "relu2"), (small_net, "pool1"), (block_net, "relu3"),
                                               (block_net, "pool"), (block_net, "conv3")]))
def test_deconvnet_equals_the_same_rules_written_in_torch(seed, case):
    make_net, layer = case
    net = make_net(seed % 11)
    x = images(seed, 1)
    channel = firing_channel(net, x, layer)
    result = deconvnet(net, x, layer, channel)
    expected, position = torch_deconvnet(net, x, layer, channel)
    assert result.position == position
    np.testing.assert_allclose(result.reconstruction, expected[0], rtol=1e-10, atol=1e-12 * np.abs(expected).max())


# ----------------------------------------------------------------------------------------------
# bad input


def test_clear_errors_for_bad_layers_channels_and_images():
    net, x = small_net(9), images(9, 4)
    valid = net.spatial_layers()
    assert valid == ["conv1", "relu1", "pool1", "conv2", "relu2"]
    with pytest.raises(KeyError, match=r"unknown layer 'conv9'.*'relu2'"):
        top_patches(net, x, "conv9", 0, progress=False)
    for layer in ("flatten", "fc"):
        with pytest.raises(ValueError, match=rf"{layer}.*no receptive field.*'relu2'\]"):
            deconvnet(net, x[:1], layer, 0)
    with pytest.raises(ValueError, match=r"channel 5 is out of range.*5 channels.*0 to 4"):
        top_patches(net, x, "relu2", 5, progress=False)
    with pytest.raises(ValueError, match=r"channels is empty"):
        top_patches_for_channels(net, x, "relu2", [], progress=False)
    with pytest.raises(ValueError, match=r"channel -1 is out of range"):
        deconvnet(net, x[:1], "relu2", -1)
    with pytest.raises(TypeError, match=r"channel must be an int"):
        deconvnet(net, x[:1], "relu2", 1.0)
    with pytest.raises(ValueError, match=r"ONE image.*\(4, 3, 12, 12\)"):
        deconvnet(net, x, "relu2", 0)
    with pytest.raises(TypeError, match=r"float32.*network's parameters are float64"):
        deconvnet(net, x[:1].astype(np.float32), "relu2", 0)
    with pytest.raises(TypeError, match=r"dtype float32 or float64, got int64"):
        top_patches(net, (x * 255).astype(np.int64), "relu2", 0, progress=False)
    with pytest.raises(ValueError, match=r"4 channels.*expects 3"):
        top_patches(net, np.zeros((2, 4, SIZE, SIZE)), "relu2", 0, progress=False)
    with pytest.raises(ValueError, match=r"4 dimensions.*\(3, 12, 12\)"):
        top_patches(net, x[0], "relu2", 0, progress=False)
    with pytest.raises(ValueError, match=r"images is empty"):
        top_patches(net, x[:0], "relu2", 0, progress=False)
    with pytest.raises(ValueError, match=r"k must be an int >= 1, got 0"):
        top_patches(net, x, "relu2", 0, k=0, progress=False)
    with pytest.raises(TypeError, match=r"images must be an \(N, C, H, W\) array.*got int"):
        top_patches(net, 7, "relu2", 0, progress=False)


# ----------------------------------------------------------------------------------------------
# filters


def test_filter_tiles_are_each_filter_under_an_increasing_affine_map():
    net = small_net(10)
    first, second = filters_grid(net, "conv1"), filters_grid(net, "conv2")
    assert first.colour and first.tiles.shape == (4, 3, 3, 3)  # (F, kh, kw, RGB)
    assert not second.colour and second.tiles.shape == (5, 4, 3, 3)  # (F, C, kh, kw)
    for tiles, weight in ((first.tiles.transpose(0, 3, 1, 2), first.weight), (second.tiles, second.weight)):
        np.testing.assert_array_equal(weight, net[("conv1" if tiles.shape[1] == 3 else "conv2")].params["weight"])
        for tile, w in zip(tiles, weight):
            assert tile.min() == 0 and tile.max() == 1
            np.testing.assert_allclose(tile * (w.max() - w.min()) + w.min(), w, rtol=1e-12, atol=1e-12)
    assert (min_max_per_filter(np.ones((2, 3, 3, 3))) == 0.5).all()  # a constant filter: mid-grey
    with pytest.raises(ValueError, match=r"'relu1' is a ReLU.*\['conv1', 'conv2'\]"):
        filters_grid(net, "relu1")
    with pytest.raises(KeyError, match=r"unknown layer 'conv3'"):
        filters_grid(net, "conv3")


def test_figures_draw_one_tile_per_patch():
    from minicnn.plot import filters_figure, top_patches_figure

    net, x = small_net(11), images(11)
    hits = top_patches_for_channels(net, x, "relu2", [0, 1], k=4, progress=False)
    recons = {f"unit {c}": [deconvnet(net, x[p.index][None], "relu2", c) for p in hits[c]] for c in hits}
    fig = top_patches_figure({f"unit {c}": hits[c] for c in hits}, recons, ncols=2)
    assert sum(len(ax.images) for ax in fig.get_axes()) == 2 * 2 * 4
    assert filters_figure(filters_grid(net, "conv1")).get_axes()
