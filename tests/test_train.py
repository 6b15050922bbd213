"""Training for real: a small CNN learns a toy problem to near-zero loss, repeatably."""

import numpy as np
import pytest

from minicnn import SGD, Adam, Conv2d, Flatten, Linear, MaxPool2d, Network, ReLU, fit
from minicnn.train import accuracy


def bars(n, seed):
    """8x8 images of one horizontal (label 0) or vertical (label 1) bright bar, on noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = rng.normal(0, 0.1, size=(n, 1, 8, 8)).astype(np.float32)
    where = rng.integers(0, 8, size=n)
    for i in range(n):
        if labels[i] == 0:
            images[i, 0, where[i], :] += 1
        else:
            images[i, 0, :, where[i]] += 1
    return images, labels


def toy_net(seed):
    return Network([("conv1", Conv2d(1, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
                    ("flatten", Flatten()), ("fc", Linear(4 * 4 * 4, 2, init="xavier"))], seed=seed)


@pytest.mark.parametrize("make_optimizer", [lambda net: Adam(net, lr=0.01), lambda net: SGD(net, lr=0.05, momentum=0.9)])
def test_small_cnn_trains_to_near_zero_loss(make_optimizer):
    images, labels = bars(128, seed=0)
    net = toy_net(seed=0)
    history = fit(net, make_optimizer(net), images, labels, epochs=60, batch_size=32, seed=0, progress=False)
    assert history[0][0] > 0.3  # it starts near chance (log 2 = 0.69)
    assert history[-1][0] < 0.01
    test_images, test_labels = bars(200, seed=1)
    assert accuracy(net, test_images, test_labels) >= 0.98


def test_same_seed_same_run():
    images, labels = bars(64, seed=0)
    runs = []
    for _ in range(2):
        net = toy_net(seed=3)
        runs.append((fit(net, SGD(net, lr=0.05, weight_decay=1e-4), images, labels, epochs=2, batch_size=16,
                         seed=5, progress=False), net.state_dict()["fc.weight"]))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_bad_training_arguments_give_clear_errors():
    images, labels = bars(8, seed=0)
    net = toy_net(seed=0)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1, got -2"):
        fit(net, Adam(net), images, labels, epochs=1, batch_size=-2, progress=False)
    with pytest.raises(ValueError, match=r"epochs must be an int >= 1, got 0"):
        fit(net, Adam(net), images, labels, epochs=0, progress=False)
    with pytest.raises(ValueError, match=r"images is an empty batch"):
        fit(net, Adam(net), images[:0], labels[:0], epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"optimizer was built for another network"):
        fit(net, Adam(toy_net(seed=1)), images, labels, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got -1.0"):
        SGD(net, lr=-1)
    with pytest.raises(ValueError, match=r"betas\[1\] must be a finite number >= 0 and < 1, got 1.0"):
        Adam(net, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match=r"weight_decay must be a number, got str"):
        Adam(net, weight_decay="1e-4")


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_optimizer_steps_equal_torch(name):
    """Five steps on the same gradients: SGD == torch.optim.SGD(momentum, weight_decay), Adam (decoupled
    weight decay) == torch.optim.AdamW, parameter by parameter, in float64."""
    torch = pytest.importorskip("torch")
    net = toy_net(seed=2).astype(np.float64)
    params = {key: torch.tensor(value.copy(), requires_grad=True) for key, value in net.named_parameters().items()}
    if name == "SGD":
        ours, theirs = SGD(net, lr=0.1, momentum=0.9, weight_decay=0.01), torch.optim.SGD(
            params.values(), lr=0.1, momentum=0.9, weight_decay=0.01)
    else:
        ours, theirs = Adam(net, lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), torch.optim.AdamW(
            params.values(), lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    rng = np.random.default_rng(0)
    for _ in range(5):
        for key, value in net.named_parameters().items():
            gradient = rng.standard_normal(value.shape)
            net.named_gradients()[key][...] = gradient
            params[key].grad = torch.tensor(gradient)
        ours.step()
        theirs.step()
    for key, value in net.named_parameters().items():
        np.testing.assert_allclose(value, params[key].detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
