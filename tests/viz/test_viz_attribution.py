"""Attribution and CAM, each checked by the identity that defines it, not by re-running its own code.

- saliency        == |d S_c / d x| (max over channels) from PyTorch autograd on the same weights
- guided backprop == PyTorch autograd with a custom ReLU whose backward is g * [x > 0] * [g > 0]
- CAM             mean over positions of M_c + b_c == S_c (float64)
- Grad-CAM        == PyTorch autograd's alpha = mean d S_c / d A; on a GAP + linear network, at the
                  GAP's input, d S_c / d A_k(i, j) = w_k^c / hw, so Grad-CAM == ReLU(M_c) / hw exactly
- occlusion       == a naive loop that occludes one position at a time, one forward pass each
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Network, ReLU, ops
from minicnn.viz.attribution import guided_backprop, occlusion, saliency
from minicnn.viz.cam import cam, grad_cam, last_conv_layer, upsample_bilinear
from minicnn.testing import assert_close
from strategies import random_array

torch = pytest.importorskip("torch")
F = torch.nn.functional
SETTINGS = settings(max_examples=12, deadline=None)
CLASSES = 5


def vgg_like(seed=0, dtype=np.float64):
    """Conv/pool blocks (one overlapping, padded pool) + two FC layers; input (N, 3, 8, 8)."""
    return Network([
        ("conv1", Conv2d(3, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(3, stride=2, padding=1)),
        ("conv2", Conv2d(4, 6, 3, padding=1)), ("relu2", ReLU()), ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()), ("fc1", Linear(6 * 2 * 2, 8)), ("relu3", ReLU()), ("drop", Dropout(0.5)),
        ("fc2", Linear(8, CLASSES)),
    ], seed=seed).astype(dtype)


def gap_net(seed=0, dtype=np.float64):
    """Conv blocks + GlobalAvgPool2d + one Linear, the CAM architecture; any input size >= 4."""
    return Network([
        ("conv1", Conv2d(3, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(4, 6, 3, padding=1)), ("relu2", ReLU()),
        ("gap", GlobalAvgPool2d()), ("fc", Linear(6, CLASSES)),
    ], seed=seed).astype(dtype)


def with_random_biases(net, seed):
    """Zero-initialised biases would hide bias mistakes: give every bias random values."""
    state = net.state_dict()
    for key in state:
        if key.endswith("bias"):
            state[key] = random_array(seed, state[key].shape) * 0.3
    return net.load_state_dict(state)


# ----------------------------------------------------------------------------------------------
# the same network, written by hand in PyTorch from net.state_dict()


class GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward passes the gradient only where the input was > 0 AND the gradient is > 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * (grad > 0)


def torch_forward(net, x, relu=F.relu, keep=None):
    """Run x through the torch twin of `net`; `keep` (a dict) receives each layer's output tensor."""
    state = {k: torch.tensor(v) for k, v in net.state_dict().items()}
    for name in net.names:
        layer = net[name]
        if isinstance(layer, Conv2d):
            x = F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], layer.stride, layer.padding)
        elif isinstance(layer, ReLU):
            x = relu(x)
        elif isinstance(layer, MaxPool2d):
            x = F.max_pool2d(x, layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, GlobalAvgPool2d):
            x = x.mean(dim=(2, 3))
        elif isinstance(layer, Flatten):
            x = x.flatten(1)
        elif isinstance(layer, Linear):
            x = F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])
        elif not isinstance(layer, Dropout):  # Dropout: the identity in eval mode
            raise NotImplementedError(type(layer).__name__)
        if keep is not None:
            if x.requires_grad:
                x.retain_grad()  # keep d(score)/d(this layer's output) after backward
            keep[name] = x
    return x


def torch_input_gradient(net, x, targets, relu=F.relu):
    """d (sum_n S_{targets[n]}(x_n)) / d x by torch autograd: image n's gradient of its own score."""
    tx = torch.tensor(x, requires_grad=True)
    scores = torch_forward(net, tx, relu)
    scores[torch.arange(len(x)), torch.tensor(targets)].sum().backward()
    return tx.grad.numpy()


batch_and_targets = st.integers(1, 3).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.integers(0, CLASSES - 1), min_size=n, max_size=n)))


# ----------------------------------------------------------------------------------------------
# saliency and guided backprop


@SETTINGS
@given(st.integers(0, 1000), batch_and_targets, st.sampled_from([np.float32, np.float64]))
def test_saliency_equals_torch_autograd(seed, batch, dtype):
    n, targets = batch
    net = with_random_biases(vgg_like(seed, np.float64), seed).astype(dtype)
    x = random_array(seed, (n, 3, 8, 8), dtype)
    result = saliency(net, x, targets)
    expected = torch_input_gradient(net, x, targets)
    assert result.gradient.shape == x.shape and result.map.shape == (n, 8, 8)
    assert_close(result.gradient, expected)
    assert_close(result.map, np.abs(expected).max(axis=1))


def test_smoothgrad_is_the_mean_saliency_map_of_noisy_copies():
    """SmoothGrad's documented recipe, with each copy's map from torch autograd; sigma=0 is plain saliency."""
    net, x, targets = vgg_like(1), random_array(1, (2, 3, 8, 8)), [0, 3]
    plain = saliency(net, x, targets).map
    np.testing.assert_allclose(saliency(net, x, targets, smooth=3, sigma=0.0).map, plain, rtol=1e-12)

    rng = np.random.default_rng(7)
    std = 0.2 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    maps = [np.abs(torch_input_gradient(net, x + rng.standard_normal(x.shape) * std[:, None, None, None],
                                        targets)).max(axis=1) for _ in range(4)]
    smooth = saliency(net, x, targets, smooth=4, sigma=0.2, seed=7)
    np.testing.assert_allclose(smooth.map, np.mean(maps, axis=0), rtol=1e-10, atol=1e-12)
    assert not np.allclose(smooth.map, plain)


@SETTINGS
@given(st.integers(0, 1000), batch_and_targets, st.sampled_from(["vgg", "gap"]))
def test_guided_backprop_equals_torch_custom_relu_through_max_pool(seed, batch, kind):
    n, targets = batch
    net = with_random_biases(vgg_like(seed) if kind == "vgg" else gap_net(seed), seed)
    x = random_array(seed, (n, 3, 8, 8))
    result = guided_backprop(net, x, targets)
    expected = torch_input_gradient(net, x, targets, relu=GuidedReLU.apply)
    assert_close(result.signal, expected)
    assert_close(result.map, np.abs(expected).max(axis=1))


def test_visualizations_leave_the_network_mode_alone():
    """Attribution runs in eval mode (Dropout off) and restores each layer's training flag after."""
    net, x = vgg_like(2), random_array(2, (1, 3, 8, 8))
    expected = saliency(net, x, 1).gradient
    net.train()
    np.testing.assert_array_equal(saliency(net, x, 1).gradient, expected)
    assert all(layer.training for layer in net.layers.values())


# ----------------------------------------------------------------------------------------------
# CAM and Grad-CAM


def torch_bilinear(maps, hw):
    """(N, h, w) maps up-sampled to (N, H, W) by torch's bilinear interpolation (half-pixel centres)."""
    return F.interpolate(torch.tensor(maps)[:, None], size=hw, mode="bilinear", align_corners=False)[:, 0].numpy()


@SETTINGS
@given(st.integers(0, 1000), batch_and_targets, st.integers(4, 12), st.integers(4, 12))
def test_cam_mean_plus_bias_is_the_class_score(seed, batch, h, w):
    """S_c = sum_k w_k^c mean_ij A_k(i,j) + b_c = mean_ij M_c(i,j) + b_c, the sum swap, in float64."""
    n, targets = batch
    net = with_random_biases(gap_net(seed), seed)
    x = random_array(seed, (n, 3, h, w))
    scores = net.forward(x)[np.arange(n), targets]
    result = cam(net, x, targets)
    assert result.map.shape == (n, h // 2, w // 2)
    np.testing.assert_allclose(result.upsampled, torch_bilinear(result.map, (h, w)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.map.mean(axis=(1, 2)) + result.bias, scores, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(result.bias, net["fc"].params["bias"][targets])
    assert cam(net, x, targets, upsample=False).upsampled is None


@SETTINGS
@given(st.integers(0, 1000), batch_and_targets)
def test_grad_cam_on_gap_network_is_relu_cam_over_hw(seed, batch):
    """With A the GAP's input (h x w), d S_c / d A_k(i,j) = w_k^c / hw, so alpha_k = w_k^c / hw and
    Grad-CAM = ReLU(sum_k w_k^c A_k) / hw = ReLU(M_c) / hw: CAM rectified and divided by hw."""
    n, targets = batch
    net = with_random_biases(gap_net(seed), seed)
    x = random_array(seed, (n, 3, 8, 10))
    class_map = cam(net, x, targets)
    gradcam = grad_cam(net, x, targets, layer="relu2")
    hw = class_map.map.shape[1] * class_map.map.shape[2]
    np.testing.assert_allclose(gradcam.weights, class_map.weights / hw, rtol=1e-12)
    np.testing.assert_allclose(gradcam.map, np.maximum(class_map.map, 0) / hw, rtol=1e-12, atol=1e-15)


@SETTINGS
@given(st.integers(0, 1000), batch_and_targets, st.sampled_from(["relu1", "pool1", "conv2", "relu2", "pool2"]))
def test_grad_cam_equals_torch_autograd(seed, batch, layer):
    n, targets = batch
    net = with_random_biases(vgg_like(seed), seed)
    x = random_array(seed, (n, 3, 8, 8))
    keep = {}
    scores = torch_forward(net, torch.tensor(x, requires_grad=True), keep=keep)
    scores[torch.arange(n), torch.tensor(targets)].sum().backward()
    volume, gradient = keep[layer].detach().numpy(), keep[layer].grad.numpy()
    alpha = gradient.mean(axis=(2, 3))
    expected = np.maximum((alpha[:, :, None, None] * volume).sum(axis=1), 0)
    result = grad_cam(net, x, targets, layer)
    assert_close(result.weights, alpha)
    assert_close(result.map, expected)
    assert_close(result.upsampled, torch_bilinear(expected, (8, 8)))


def test_upsampling_is_torch_bilinear_without_corner_alignment():
    maps = random_array(3, (2, 5, 7))
    expected = F.interpolate(torch.tensor(maps)[:, None], size=(64, 48), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(upsample_bilinear(maps, (64, 48)), expected[:, 0].numpy(), atol=1e-12)


def test_last_conv_layer_is_the_relu_after_the_last_conv():
    assert last_conv_layer(vgg_like()) == "relu2" and last_conv_layer(gap_net()) == "relu2"


# ----------------------------------------------------------------------------------------------
# occlusion


def naive_occlusion(net, x, target, size, stride, fill):
    """One image, one square position, one forward pass at a time; the heat map from per-pixel lists."""
    n, c, h, w = x.shape
    probs, heat = [], np.zeros((n, h, w))
    for k in range(n):
        base = ops.softmax(net.forward(x[k:k + 1]))[0, target[k]]
        color = x[k].mean(axis=(1, 2)) if fill == "mean" else np.full(c, fill)
        rows = []
        covering = [[[] for _ in range(w)] for _ in range(h)]
        for top in range(0, h - size + 1, stride):
            row = []
            for left in range(0, w - size + 1, stride):
                image = x[k].copy()
                image[:, top:top + size, left:left + size] = color[:, None, None]
                p = ops.softmax(net.forward(image[None]))[0, target[k]]
                row.append(p)
                for y in range(top, top + size):
                    for z in range(left, left + size):
                        covering[y][z].append(base - p)
            rows.append(row)
        probs.append(rows)
        heat[k] = [[np.mean(cell) if cell else 0.0 for cell in line] for line in covering]
    return np.array(probs), heat


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 1000), batch_and_targets, st.sampled_from([1, 3, 5]), st.sampled_from([1, 2, 3]),
       st.sampled_from(["mean", 0.5]), st.integers(1, 7), st.integers(7, 11), st.integers(7, 11))
def test_occlusion_equals_naive_loop(seed, batch, size, stride, fill, batch_size, h, w):
    n, targets = batch
    net = with_random_biases(gap_net(seed), seed)
    x = random_array(seed, (n, 3, h, w))
    original = x.copy()
    result = occlusion(net, x, targets, size, stride, fill=fill, batch_size=batch_size, progress=False)
    probability, heatmap = naive_occlusion(net, x, targets, size, stride, fill)
    np.testing.assert_array_equal(x, original)
    assert result.probability.shape == probability.shape == (n, (h - size) // stride + 1, (w - size) // stride + 1)
    assert result.heatmap.shape == (n, h, w)
    np.testing.assert_allclose(result.probability, probability, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(result.drop, result.base_probability[:, None, None] - probability, atol=1e-14)
    np.testing.assert_allclose(result.heatmap, heatmap, atol=1e-14)


def test_occlusion_of_a_saturated_float32_network_is_not_flat():
    """A float32 network so sure of its class that its float32 softmax is exactly 1.0: the drops are
    measured in float64, so covering the image still changes p and the map is not constant."""
    net = with_random_biases(gap_net(3, dtype=np.float32), 3)
    x = random_array(4, (2, 3, 10, 10)).astype(np.float32)
    scores = net.forward(x).astype(np.float64)
    margins = scores[:, 0] - scores[:, 1:].max(axis=1)  # how far class 0 leads (or trails)
    net["fc"].params["bias"][0] += np.float32(25 - margins.min())  # now it leads by 25 logits or more
    targets = np.zeros(2, dtype=np.int64)
    assert np.all(ops.softmax(net.forward(x))[:, 0] == 1.0)  # float32 saturates ...
    result = occlusion(net, x, targets, 3, 1, progress=False)
    assert result.probability.dtype == np.float64
    assert np.all(result.base_probability < 1.0)  # ... float64 does not
    for heat in result.heatmap:
        assert heat.max() > heat.min()


# ----------------------------------------------------------------------------------------------
# bad inputs: clear errors naming what was given and what is valid


def test_bad_targets():
    net, x = vgg_like(), random_array(0, (2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"target 5 is out of range.*valid targets are 0 to 4"):
        saliency(net, x, 5)
    with pytest.raises(ValueError, match=r"target -1 is out of range"):
        guided_backprop(net, x, [0, -1])
    with pytest.raises(ValueError, match=r"one such int per image \(2 images\), got shape \(3,\)"):
        saliency(net, x, [0, 1, 2])
    with pytest.raises(TypeError, match="target must be"):
        saliency(net, x, 1.0)
    with pytest.raises(TypeError, match="bool"):
        saliency(net, x, True)
    with pytest.raises(ValueError, match="out of range"):
        occlusion(gap_net(), x, 7, 3, 2, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        cam(gap_net(), x, 9)
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(net, x, 9, "relu2")


def test_bad_images():
    net = vgg_like()
    with pytest.raises(ValueError, match=r"x must have 4 dimensions, got shape \(3, 8, 8\)"):
        saliency(net, random_array(0, (3, 8, 8)), 0)
    with pytest.raises(TypeError, match="x must have dtype float32 or float64, got int64"):
        saliency(net, np.zeros((1, 3, 8, 8), dtype=np.int64), 0)
    with pytest.raises(TypeError, match=r"x has dtype float32 but the network's parameters are float64"):
        guided_backprop(net, random_array(0, (1, 3, 8, 8), np.float32), 0)
    with pytest.raises(ValueError, match=r"x has shape \(1, 1, 8, 8\) with 1 channels.*expects 3"):
        saliency(net, random_array(0, (1, 1, 8, 8)), 0)
    with pytest.raises(ValueError, match=r"an input of shape \(1, 3, 12, 12\).*does not fit this network"):
        saliency(net, random_array(0, (1, 3, 12, 12)), 0)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        cam(gap_net(), [[1.0]], 0)


def test_bad_layers_and_cam_on_the_wrong_network():
    net, x = vgg_like(), random_array(0, (1, 3, 8, 8))
    with pytest.raises(KeyError, match=r"unknown layer 'conv9'.*\['conv1', 'relu1', 'pool1'"):
        grad_cam(net, x, 0, "conv9")
    with pytest.raises(ValueError, match=r"'fc2' is the last layer"):
        grad_cam(net, x, 0, "fc2")
    with pytest.raises(ValueError, match=r"'fc1' gives shape \(1, 8\).*choose one of"):
        grad_cam(net, x, 0, "fc1")
    with pytest.raises(ValueError, match=r"found none: this network ends in: .*fc1 \(Linear\).*grad_cam"):
        cam(net, x, 0)
    two_fc = Network([("conv", Conv2d(3, 4, 3)), ("gap", GlobalAvgPool2d()), ("fc1", Linear(4, 4)),
                      ("relu", ReLU()), ("fc2", Linear(4, 3))], seed=0).astype(np.float64)
    with pytest.raises(ValueError, match=r"found \['fc1 \(Linear\)'\] between them"):
        cam(two_fc, x, 0)
    ends_in_relu = Network([("conv", Conv2d(3, 4, 3)), ("gap", GlobalAvgPool2d()), ("fc", Linear(4, 3)),
                            ("relu", ReLU())], seed=0).astype(np.float64)
    with pytest.raises(ValueError, match=r"ending in GlobalAvgPool2d \+ one Linear.*relu \(ReLU\)"):
        cam(ends_in_relu, x, 0)
    # a ReLU between GAP and fc is fine only where it changes nothing (non-negative pooled features)
    relu_after_gap = [("conv", Conv2d(3, 4, 3)), ("gap", GlobalAvgPool2d()), ("relu", ReLU()), ("fc", Linear(4, 3))]
    with pytest.raises(ValueError, match="'relu' between 'gap' and 'fc' is not the identity"):
        cam(Network(relu_after_gap, seed=0).astype(np.float64), -np.abs(x) - 5, 0)
    rectified = Network([("conv", Conv2d(3, 4, 3)), ("relu0", ReLU())] + relu_after_gap[1:], seed=0).astype(np.float64)
    result = cam(rectified, x, 1)
    np.testing.assert_allclose(result.map.mean(axis=(1, 2)) + result.bias, rectified.forward(x)[:, 1], rtol=1e-12)


def test_bad_options():
    net, x = gap_net(), random_array(0, (1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"size \(9, 9\) is larger than the images, which are \(8, 8\)"):
        occlusion(net, x, 0, 9, 1, progress=False)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        occlusion(net, x, 0, 3, 0, progress=False)
    with pytest.raises(ValueError, match=r"fill must be one of \['mean'\], got 'grey'"):
        occlusion(net, x, 0, 3, 1, fill="grey", progress=False)
    with pytest.raises(TypeError, match=r"fill \(a grey level, or 'mean'\) must be a number, got NoneType None"):
        occlusion(net, x, 0, 3, 1, fill=None, progress=False)
    with pytest.raises(ValueError, match=r"fill \(a grey level, or 'mean'\) must be a finite number, got nan"):
        occlusion(net, x, 0, 3, 1, fill=np.nan, progress=False)
    with pytest.raises(ValueError, match=r"fill 1e\+40 does not fit the images' dtype float32"):
        occlusion(gap_net().astype(np.float32), x.astype(np.float32), 0, 3, 1, fill=1e40, progress=False)
    x_with_nan = x.copy()
    x_with_nan[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"x must hold finite values, got 1 NaN or inf of 192"):
        saliency(net, x_with_nan, 0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        occlusion(net, x, 0, 3, 1, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="smooth must be an int >= 0, got -1"):
        saliency(net, x, 0, smooth=-1)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        saliency(net, x, 0, smooth=2, sigma=-0.1)


def test_attribution_figure_has_a_row_per_image_and_a_column_per_method():
    from minicnn.plot import attribution_figure, heatmap_overlay

    images = np.random.default_rng(0).random((3, 3, 16, 16)).astype(np.float32)
    maps = {"saliency": np.random.default_rng(1).random((3, 16, 16)), "signed": random_array(2, (3, 16, 16))}
    fig = attribution_figure(images, maps)
    assert len(fig.axes) == 3 * 3 and [ax.get_title() for ax in fig.axes[:3]] == ["image", "saliency", "signed"]
    with pytest.raises(ValueError, match=r"maps for 'bad' must have shape \(3, 16, 16\), got \(3, 8, 8\)"):
        attribution_figure(images, {"bad": np.zeros((3, 8, 8))})
    # a column is drawn with one colour map: here only row 1's occlusion map has a negative value
    occlusion_maps = np.abs(random_array(3, (3, 16, 16)))
    occlusion_maps[1, 0, 0] = -0.1
    fig = attribution_figure(images, {"occlusion": occlusion_maps})
    assert {fig.axes[2 * row + 1].images[1].get_cmap().name for row in range(3)} == {"RdBu_r"}
    with pytest.raises(ValueError, match=r"heat_hw must have the image's size \(16, 16\)"):
        heatmap_overlay(images[0], np.zeros((4, 4)))
