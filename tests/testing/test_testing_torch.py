"""minicnn.testing's checks pass on PyTorch's ops (torch.nn.functional wrapped to the checks' signatures).

The checks hold a function to an identity with minicnn as the reference; an independent
implementation passing them shows the checks demand what PyTorch computes, nothing more or less.
"""
import numpy as np
import pytest

from minicnn.testing import (check_conv2d, check_conv2d_backward, check_conv_transpose2d, check_matrix_form,
                             check_max_pool2d, gradcheck)

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_conv2d(x, w, stride, padding):
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=padding).numpy()


def torch_conv_transpose2d(y, w, stride, padding, output_padding):
    return F.conv_transpose2d(torch.from_numpy(y), torch.from_numpy(w), stride=stride, padding=padding,
                              output_padding=output_padding).numpy()


def torch_conv2d_backward(dy, x, w, stride, padding):
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.zeros(w.shape[0], dtype=tx.dtype, requires_grad=True)
    F.conv2d(tx, tw, tb, stride=stride, padding=padding).backward(torch.from_numpy(dy))
    return tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


def torch_max_pool2d(x, kernel_size, stride, padding):
    y, switches = F.max_pool2d(torch.from_numpy(x), kernel_size, stride, padding, return_indices=True)
    return y.numpy(), switches.numpy()


def torch_conv2d_matrix(w, input_shape, stride, padding):
    """The Jacobian of conv2d with respect to its input, by autograd: (F*Ho*Wo, C*H*W)."""
    def conv(flat_x):
        return F.conv2d(flat_x.reshape(1, *input_shape), torch.from_numpy(w), stride=stride, padding=padding).ravel()

    return torch.autograd.functional.jacobian(conv, torch.zeros(int(np.prod(input_shape)), dtype=torch.from_numpy(w).dtype)).numpy()


@pytest.mark.parametrize("check,fn", [
    (check_conv2d, torch_conv2d),
    (check_conv_transpose2d, torch_conv_transpose2d),
    (check_conv2d_backward, torch_conv2d_backward),
    (check_max_pool2d, torch_max_pool2d),
    (check_matrix_form, torch_conv2d_matrix),
], ids=["conv2d", "conv_transpose2d", "conv2d_backward", "max_pool2d", "matrix_form"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_check_passes_on_torch(check, fn, dtype):
    check(fn, max_examples=50, dtype=dtype)


def test_gradcheck_passes_on_torch_autograd_and_fails_on_half_of_it():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 3, 2))
    r = rng.standard_normal(torch_conv2d(x, w, (2, 1), (1, 0)).shape)

    def loss(x_):
        return float(np.sum(np.tanh(torch_conv2d(x_, w, (2, 1), (1, 0))) * r))

    tx = torch.tensor(x, requires_grad=True)
    (torch.tanh(F.conv2d(tx, torch.from_numpy(w), stride=(2, 1), padding=(1, 0))) * torch.from_numpy(r)).sum().backward()
    grad = tx.grad.numpy()
    assert gradcheck(loss, x, grad) <= 1e-6
    with pytest.raises(AssertionError, match=r"gradient check failed: worst relative error 0.5"):
        gradcheck(loss, x, grad / 2)
