"""The Network: forward/backward between any two layers, rules per call, state, errors, torch oracle."""
import numpy as np
import pytest

from minicnn import Conv2d, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Network, ReLU, ops
from minicnn.io import WeightFileError, load_weights, save_weights
from strategies import random_array


def small_net(seed=0, dtype=np.float64):
    net = Network([
        ("conv1", Conv2d(3, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(4, 6, 3, stride=2, padding=1)), ("relu2", ReLU()),
        ("flatten", Flatten()), ("fc", Linear(6 * 2 * 2, 5)),
    ], seed=seed)
    return net.astype(dtype)


def test_forward_splits_at_any_layer():
    net = small_net()
    x = random_array(0, (2, 3, 8, 8))
    full = net.forward(x)
    for name in net.names[:-1]:
        middle = net.forward(x, upto=name)
        np.testing.assert_array_equal(net.forward(middle, after=name), full)
    acts = net.activations(x, ["relu1", "conv2"])
    assert acts["relu1"].shape == (2, 4, 8, 8) and acts["conv2"].shape == (2, 6, 2, 2)
    np.testing.assert_array_equal(net(x), full)


def test_backward_splits_at_any_layer():
    net = small_net()
    x = random_array(0, (2, 3, 8, 8))
    seed = random_array(1, net.forward(x).shape)
    full = net.backward(seed, param_grads=False)
    middle = net.backward(seed, after="pool1", param_grads=False)
    np.testing.assert_array_equal(net.backward(middle, upto="pool1", param_grads=False), full)


def test_backward_from_a_middle_layer_equals_gradient_of_that_activation():
    """The gradient of <activation of relu2, g> with respect to x, by finite differences."""
    net = small_net()
    x = random_array(0, (1, 3, 8, 8))
    g = random_array(1, net.forward(x, upto="relu2").shape)
    dx = net.backward(g, upto="relu2", param_grads=False)
    eps, worst = 1e-6, 0.0
    for index in list(np.ndindex(x.shape))[::7]:
        x_plus, x_minus = x.copy(), x.copy()
        x_plus[index] += eps
        x_minus[index] -= eps
        numeric = (np.vdot(net.forward(x_plus, upto="relu2"), g) - np.vdot(net.forward(x_minus, upto="relu2"), g)) / (2 * eps)
        worst = max(worst, abs(numeric - dx[index]))
    assert worst <= 1e-7 * max(np.abs(dx).max(), 1.0)


def test_rules_differ_only_at_relus():
    """With 'deconvnet' every ReLU passes max(signal, 0); on a net without ReLUs the rules agree."""
    net = Network([("conv", Conv2d(2, 3, 3)), ("pool", MaxPool2d(2)), ("gap", GlobalAvgPool2d())], seed=0)
    net.astype(np.float64)
    x = random_array(0, (1, 2, 6, 6))
    seed = random_array(1, net.forward(x).shape)
    grads = [net.backward(seed, rule=rule, param_grads=False) for rule in ("gradient", "deconvnet", "guided")]
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[0], grads[2])

    relu_net = small_net()
    relu_net.forward(random_array(3, (1, 3, 8, 8)))
    seed = random_array(2, (1, 5))
    guided = relu_net.backward(seed, rule="guided", param_grads=False)
    gradient = relu_net.backward(seed, rule="gradient", param_grads=False)
    assert not np.array_equal(guided, gradient)


def test_unknown_layer_names_list_the_valid_ones():
    net = small_net()
    with pytest.raises(KeyError, match=r"unknown layer 'conv9'; valid layer names are \['conv1', 'relu1'"):
        net.forward(random_array(0, (1, 3, 8, 8)), upto="conv9")
    with pytest.raises(KeyError, match="valid layer names"):
        net["nope"]
    with pytest.raises(ValueError, match="must come after"):
        net.forward(random_array(0, (1, 3, 8, 8)), after="conv2", upto="conv1")


def test_backward_checks_the_forward_pass_and_the_seed_shape():
    net = small_net()
    with pytest.raises(RuntimeError, match="forward pass first"):
        net.backward(np.ones((1, 5)))
    x = random_array(0, (1, 3, 8, 8))
    net.forward(x, upto="pool1")
    with pytest.raises(RuntimeError, match="last forward ran layers 'conv1' to 'pool1'"):
        net.backward(np.ones((1, 5)))
    net.forward(x)
    with pytest.raises(ValueError, match=r"grad must have the shape of the output of layer 'fc', \(1, 5\), got \(1, 4\)"):
        net.backward(np.ones((1, 4)))


def test_state_dict_names_save_and_load(tmp_path):
    net = small_net(seed=1)
    assert list(net.state_dict()) == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    path = tmp_path / "net.npz"
    save_weights(path, net.state_dict())
    other = small_net(seed=2)
    x = random_array(0, (1, 3, 8, 8))
    assert not np.array_equal(other(x), net(x))
    other.load_state_dict(load_weights(path))
    np.testing.assert_array_equal(other(x), net(x))


def test_load_state_dict_lists_every_problem_at_once():
    net = small_net()
    state = net.state_dict()
    del state["conv1.bias"]
    state["conv2.weight"] = np.zeros((6, 4, 5, 5))
    state["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as error:
        net.load_state_dict(state)
    message = str(error.value)
    assert "missing keys: ['conv1.bias']" in message
    assert "unexpected keys: ['extra.weight']" in message
    assert "conv2.weight: file (6, 4, 5, 5) vs network (6, 4, 3, 3)" in message


def test_load_state_dict_refuses_non_finite_values_and_loads_nothing_then():
    net = small_net(dtype=np.float32)
    before = net.state_dict()
    state = {key: value.astype(np.float64) for key, value in before.items()}
    state["conv1.weight"] = state["conv1.weight"] + 1.0   # would be loaded first ...
    state["fc.weight"][0, 0] = 1e40                       # ... but this one overflows float32
    with pytest.raises(ValueError, match=r"fc.weight converted to float32 must hold finite values, got 1 NaN or inf"):
        net.load_state_dict(state)
    state["fc.weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"fc.weight must hold finite values"):
        net.load_state_dict(state)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[key])   # nothing was half-loaded
    with pytest.raises(TypeError, match=r"state must be a dict of arrays .*got list"):
        net.load_state_dict([1, 2])


def test_a_layer_that_cannot_take_its_input_is_named():
    net = small_net()
    with pytest.raises(ValueError, match=r"layer 'fc' \(Linear\(24, 5\)\) cannot take its input of shape \(2, 54\)"):
        net.forward(random_array(0, (2, 3, 12, 12)))
    with pytest.raises(TypeError, match=r"names must be a non-empty list of layer names, got 'relu1'"):
        net.activations(random_array(0, (2, 3, 8, 8)), "relu1")
    with pytest.raises(TypeError, match=r"names must be a non-empty list"):
        net.activations(random_array(0, (2, 3, 8, 8)), [])
    outputs = net.activations(random_array(0, (2, 3, 8, 8)), ["relu2", "pool1"])
    assert {name: a.shape for name, a in outputs.items()} == {"pool1": (2, 4, 4, 4), "relu2": (2, 6, 2, 2)}


def test_seed_makes_initialisation_repeatable_and_names_are_checked():
    np.testing.assert_array_equal(small_net(seed=3).state_dict()["fc.weight"], small_net(seed=3).state_dict()["fc.weight"])
    with pytest.raises(ValueError, match="unique"):
        Network([("a", ReLU()), ("a", ReLU())])
    with pytest.raises(ValueError, match="without '.'"):
        Network([("a.b", ReLU())])


def test_whole_network_input_gradient_equals_torch_autograd():
    torch = pytest.importorskip("torch")
    net = small_net(seed=4)
    params = {k: torch.tensor(v) for k, v in net.state_dict().items()}
    x = random_array(0, (2, 3, 8, 8))
    tx = torch.tensor(x, requires_grad=True)
    F = torch.nn.functional
    h = F.max_pool2d(F.relu(F.conv2d(tx, params["conv1.weight"], params["conv1.bias"], padding=1)), 2)
    h = F.relu(F.conv2d(h, params["conv2.weight"], params["conv2.bias"], stride=2, padding=1))
    scores = F.linear(h.flatten(1), params["fc.weight"], params["fc.bias"])
    seed = random_array(1, (2, 5))
    scores.backward(torch.tensor(seed))
    np.testing.assert_allclose(net.forward(x), scores.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net.backward(seed, param_grads=False), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_network_parameter_gradients_equal_torch():
    torch = pytest.importorskip("torch")
    net = small_net(seed=5)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.state_dict().items()}
    x = random_array(0, (3, 3, 8, 8))
    labels = np.array([0, 3, 4])
    F = torch.nn.functional
    h = F.max_pool2d(F.relu(F.conv2d(torch.tensor(x), params["conv1.weight"], params["conv1.bias"], padding=1)), 2)
    h = F.relu(F.conv2d(h, params["conv2.weight"], params["conv2.bias"], stride=2, padding=1))
    F.cross_entropy(F.linear(h.flatten(1), params["fc.weight"], params["fc.bias"]), torch.tensor(labels)).backward()
    net.train()
    net.zero_grad()
    scores = net.forward(x)
    net.backward(ops.cross_entropy_backward(scores, labels))
    for name, grad in net.named_gradients().items():
        np.testing.assert_allclose(grad, params[name].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_loading_a_truncated_or_missing_file_gives_one_clear_error(tmp_path):
    net = small_net()
    path = tmp_path / "net.npz"
    save_weights(path, net.state_dict())
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match="cut.npz"):
        net.load_state_dict(load_weights(tmp_path / "cut.npz"))
    with pytest.raises((FileNotFoundError, WeightFileError), match="missing.npz"):
        net.load_state_dict(load_weights(tmp_path / "missing.npz"))


def test_an_input_of_another_dtype_than_the_network_is_refused_by_name():
    net = small_net(dtype=np.float32)
    assert net.dtype == np.float32 and Network([("relu", ReLU())]).dtype is None
    with pytest.raises(TypeError, match=r"x has dtype float64 but the network's parameters are float32"):
        net.forward(random_array(0, (1, 3, 8, 8)))


def test_a_loaded_network_shares_no_memory_with_the_callers_state():
    net, state = small_net(seed=1, dtype=np.float32), small_net(seed=2, dtype=np.float32).state_dict()
    net.load_state_dict(state)
    params = net.named_parameters()
    assert not any(np.shares_memory(params[key], state[key]) for key in state)
    before = net.state_dict()
    for value in state.values():
        value += 1.0          # the caller changes its dict afterwards: the network does not change
    for key, value in net.named_parameters().items():
        np.testing.assert_array_equal(value, before[key])


def test_adopt_hands_matching_arrays_over_without_a_copy():
    net = small_net(seed=1, dtype=np.float32)
    state = small_net(seed=2, dtype=np.float32).state_dict()
    state["fc.bias"] = state["fc.bias"].astype(np.float64)            # another dtype: copied
    state["fc.weight"] = np.asfortranarray(state["fc.weight"])         # not C-contiguous: copied
    net.load_state_dict(state, adopt=True)
    params = net.named_parameters()
    for key in state:
        assert (params[key] is state[key]) == (key not in ("fc.bias", "fc.weight")), key
        np.testing.assert_array_equal(params[key], state[key].astype(np.float32))


@pytest.mark.parametrize("adopt", [False, True])
@pytest.mark.parametrize("bad", ["nan", "overflows float32", "wrong shape", "integers"])
def test_a_refused_state_leaves_the_network_unchanged(monkeypatch, adopt, bad):
    """Checked piece by piece (pieces of 7 elements here), refused before any parameter changes."""
    import minicnn.network
    monkeypatch.setattr(minicnn.network, "_CHECK_PIECE", 7)
    net = small_net(seed=1, dtype=np.float32)
    before = net.state_dict()
    state = {key: value.astype(np.float64) for key, value in small_net(seed=2).state_dict().items()}
    message = {"nan": r"fc\.weight must hold finite values, got 1 NaN or inf of 120",
               "overflows float32": r"fc\.weight converted to float32 must hold finite values, got 1 NaN or inf",
               "wrong shape": r"fc\.weight: file \(5, 23\) vs network \(5, 24\)",
               "integers": r"fc\.weight must hold floating-point values, got dtype int64"}[bad]
    if bad == "nan":
        state["fc.weight"][4, 23] = np.nan              # in the last piece
    elif bad == "overflows float32":
        state["fc.weight"][4, 23] = 1e300
    elif bad == "wrong shape":
        state["fc.weight"] = state["fc.weight"][:, :23]
    else:
        state["fc.weight"] = np.ones((5, 24), dtype=np.int64)
    with pytest.raises((ValueError, TypeError), match=message):
        net.load_state_dict(state, adopt=adopt)
    for key, value in net.named_parameters().items():
        np.testing.assert_array_equal(value, before[key])
