"""minicnn.shapes: output sizes, the input sizes behind one output size, receptive fields."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minicnn import ops
from minicnn.layers import AvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from minicnn.network import Network
from minicnn.shapes import (
    ReceptiveField,
    conv2d_output_shape,
    conv_output_size,
    conv_transpose2d_output_shape,
    conv_transpose_output_size,
    input_sizes_for_output,
    output_hw,
    pair,
    receptive_field,
    receptive_field_box,
)

# ----------------------------------------------------------------------------------------------
# output sizes: the lecture's cases


def test_output_sizes_of_the_lecture():
    assert conv_output_size(8, 4, stride=2, padding=2) == 5  # 1D: (8 + 4 - 4) / 2 + 1
    assert conv2d_output_shape((5, 5), 2, stride=2) == (2, 2)  # 2D: floor(3 / 2) + 1, not 3
    assert conv2d_output_shape((4, 4), 2, stride=2) == (2, 2)  # pooling 4x4 -> 2x2
    assert conv_transpose2d_output_shape((2, 2), 2, stride=2) == (4, 4)
    assert conv_transpose2d_output_shape((2, 2), 2, stride=2, output_padding=1) == (5, 5)
    assert conv_transpose2d_output_shape((4, 4), 4, stride=2, padding=2) == (6, 6)
    assert conv_transpose_output_size(5, 4, stride=2, padding=2) == 8


def test_two_input_sizes_map_to_one_output_size_with_stride_2():
    assert input_sizes_for_output(2, kernel=2, stride=2) == range(4, 6)  # 4x4 and 5x5 both give 2x2
    assert [conv_output_size(n, 2, 2) for n in range(3, 7)] == [1, 2, 2, 3]
    assert input_sizes_for_output(5, kernel=4, stride=2, padding=2) == range(8, 10)
    assert input_sizes_for_output(3, kernel=3, stride=1, padding=1) == range(3, 4)  # stride 1: one size
    assert input_sizes_for_output(1, kernel=1, stride=1, padding=2) == range(1, 1)  # none at all


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9), st.integers(1, 6), st.integers(1, 4), st.integers(0, 3))
def test_input_sizes_for_output_are_exactly_the_sizes_that_give_it(out, k, s, p):
    sizes = input_sizes_for_output(out, k, s, p)
    for n in range(1, (out + 2) * s + k + 1):
        gives_out = n + 2 * p >= k and conv_output_size(n, k, s, p) == out
        assert (n in sizes) == gives_out
    for n in sizes:  # output_padding is the offset within the range, as the input gradient computes it
        assert (n + 2 * p - k) % s == n - (out - 1) * s - k + 2 * p
        assert conv_transpose_output_size(out, k, s, p, output_padding=(n + 2 * p - k) % s) == n


def test_input_sizes_for_output_rejects_bad_arguments():
    with pytest.raises(ValueError, match="out must be an int >= 1, got 0"):
        input_sizes_for_output(0, 3)
    with pytest.raises(ValueError, match="padding must be an int >= 0, got -1"):
        input_sizes_for_output(2, 3, 1, -1)
    with pytest.raises(TypeError, match="kernel must be an int"):
        input_sizes_for_output(2, (3, 3))


def test_the_rows_a_strided_conv_never_reads_come_back_as_zeros():
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    w = np.ones((1, 1, 2, 2))
    y = ops.conv2d(x, w, stride=2)
    back = ops.conv2d_input_gradient(np.ones_like(y), w, x.shape, stride=2)
    assert back.shape == (1, 1, 5, 5)
    assert not back[0, 0, 4, :].any() and not back[0, 0, :, 4].any()


# ----------------------------------------------------------------------------------------------
# receptive fields


def test_stacked_3x3_convolutions_see_3_5_7():
    fields = receptive_field([(3, 1, 1)] * 3)
    assert [f.size for f in fields] == [(3, 3), (5, 5), (7, 7)]
    assert [f.jump for f in fields] == [(1, 1)] * 3
    assert [f.start for f in fields] == [(-1, -1), (-2, -2), (-3, -3)]  # padding: boxes start outside
    assert [f.center for f in fields] == [(0.0, 0.0)] * 3  # 'same' padding keeps unit 0 centred on pixel 0
    assert [f.name for f in fields] == [0, 1, 2]
    assert [f.start for f in receptive_field([(3, 1, 0)] * 3)] == [(0, 0)] * 3


def test_strided_stack_multiplies_the_jump():
    # conv 3 / pool 2 stride 2 / conv 3 / pool 2 stride 2 / conv 3
    fields = receptive_field([(3, 1, 0), (2, 2, 0), (3, 1, 0), (2, 2, 0), (3, 1, 0)])
    assert [f.size[0] for f in fields] == [3, 4, 8, 10, 18]
    assert [f.jump[0] for f in fields] == [1, 2, 2, 4, 4]
    # AlexNet's first layer: kernel 11, stride 4, padding 2, then a 3x3 stride-2 max-pool
    alexnet = receptive_field([(11, 4, 2), (3, 2, 0)])
    conv1, pool1 = ((11, 11), (4, 4), (2, 2)), ((3, 3), (2, 2), (0, 0))
    assert alexnet[0] == ReceptiveField(0, (11, 11), (4, 4), (-2, -2), (conv1,))
    assert alexnet[1] == ReceptiveField(1, (19, 19), (8, 8), (-2, -2), (conv1, pool1))


def test_non_square_geometry_is_tracked_per_axis():
    field = receptive_field([((3, 1), (1, 2), (1, 0)), ((1, 3), 1, 0)])[-1]
    assert field.size == (3, 5) and field.jump == (1, 2) and field.start == (-1, 0)


def test_receptive_field_of_a_network_skips_pointwise_layers():
    net = Network([("conv1", Conv2d(1, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2)),
                   ("conv2", Conv2d(4, 4, 3, padding=1)), ("relu2", ReLU()), ("pool2", AvgPool2d(2)),
                   ("flatten", Flatten()), ("fc", Linear(4 * 4 * 4, 3))], seed=0)
    fields = receptive_field(net, upto="relu2")
    assert [f.name for f in fields] == ["conv1", "relu1", "pool1", "conv2", "relu2"]
    assert [f.size[0] for f in fields] == [3, 3, 4, 8, 8]
    assert receptive_field(net, upto="pool2")[-1].size == (10, 10)
    with pytest.raises(ValueError, match=r"layer 'flatten' \(Flatten\) has no receptive-field geometry"):
        receptive_field(net)
    with pytest.raises(TypeError, match="upto= is only for a Network"):
        receptive_field([(3, 1, 0)], upto=0)
    with pytest.raises(ValueError, match=r"layer 1 must be a \(kernel, stride, padding\) triple"):
        receptive_field([(3, 1, 0), (3, 1)])
    with pytest.raises(ValueError, match="stride must be >= 1"):
        receptive_field([(3, 0, 0)])


def test_receptive_field_box_is_clipped_to_the_image():
    field = receptive_field([(3, 1, 1)] * 3)[-1]  # 7x7, start -3
    assert receptive_field_box(field, 0, 0, (10, 12)) == (0, 4, 0, 4)  # corner unit: 4x4 of its 7x7 is real
    assert receptive_field_box(field, 5, 6, (10, 12)) == (2, 9, 3, 10)  # interior unit: the full 7x7
    assert receptive_field_box(field, 9, 11, (10, 12)) == (6, 10, 8, 12)
    strided = receptive_field([(3, 1, 0), (2, 2, 0), (3, 1, 0)])[-1]  # size 8, jump 2, start 0
    assert receptive_field_box(strided, 1, 2, (20, 20)) == (2, 10, 4, 12)
    with pytest.raises(ValueError, match="i must be an int >= 0"):
        receptive_field_box(field, -1, 0, (10, 12))
    with pytest.raises(TypeError, match="layer_info must be a ReceptiveField"):
        receptive_field_box((7, 1, -3), 0, 0, (10, 12))


def test_receptive_field_box_refuses_a_unit_the_layer_does_not_have():
    field = receptive_field([(3, 1, 0), (2, 2, 0)])[-1]  # 10 -> 8 -> 4
    assert output_hw(field, (10, 11)) == (4, 4)
    assert receptive_field_box(field, 3, 3, (10, 11)) == (6, 10, 6, 10)
    with pytest.raises(ValueError, match=r"unit \(4, 0\) does not exist in layer 1: for an input of size "
                                         r"\(10, 11\) the layer's output is \(4, 4\), so i < 4 and j < 4"):
        receptive_field_box(field, 4, 0, (10, 11))  # its box (8, 12) would still overlap the image
    with pytest.raises(ValueError, match=r"unit \(0, 100\) does not exist"):
        receptive_field_box(field, 0, 100, (10, 11))
    # a unit that exists but sees only zero padding (padding >= kernel)
    padded = receptive_field([(1, 1, 2)])[-1]
    assert output_hw(padded, (3, 3)) == (7, 7)
    with pytest.raises(ValueError, match=r"sees rows -2..-2, cols -2..-2: nothing of an input of size \(3, 3\)"):
        receptive_field_box(padded, 0, 0, (3, 3))
    with pytest.raises(ValueError, match=r"input_hw must be >= 1, got \(0, 3\)"):
        receptive_field_box(padded, 0, 0, (0, 3))


def test_receptive_field_box_of_a_network_layer_knows_its_output_size():
    net = Network([("conv1", Conv2d(1, 4, 3, padding=1)), ("relu1", ReLU()), ("pool1", MaxPool2d(2))], seed=0)
    field = receptive_field(net)[-1]
    assert output_hw(field, (9, 8)) == net.forward(np.zeros((1, 1, 9, 8), np.float32)).shape[2:] == (4, 4)
    with pytest.raises(ValueError, match=r"unit \(4, 3\) does not exist in layer 'pool1'.*output is \(4, 4\)"):
        receptive_field_box(field, 4, 3, (9, 8))


# ----------------------------------------------------------------------------------------------
# bad arguments


def test_numpy_integers_are_sizes_and_come_back_as_python_ints():
    for value, expected in ((np.int64(2), (2, 2)), ((np.int32(3), 4), (3, 4)), ([np.uint8(1), np.int64(5)], (1, 5))):
        got = pair(value, "stride")
        assert got == expected and all(type(v) is int for v in got)
    assert conv2d_output_shape((np.int64(8), 8), np.int64(3), stride=np.int64(2), padding=np.int64(1)) == (4, 4)
    assert conv_output_size(np.int64(8), np.int64(4), np.int64(2), np.int64(2)) == 5
    assert conv_transpose2d_output_shape((2, 2), 2, stride=2, output_padding=np.int64(1)) == (5, 5)
    assert receptive_field([(np.int64(3), np.int64(1), np.int64(1))])[0].size == (3, 3)
    field = receptive_field([(3, 1, 1)])[0]
    assert receptive_field_box(field, np.int64(0), np.int64(1), (np.int64(10), np.int64(10))) == (0, 2, 0, 3)
    conv, pool = Conv2d(3, 4, np.int64(3), stride=np.int64(2), padding=np.int64(1)), MaxPool2d(np.int64(2))
    assert (conv.kernel_size, conv.stride, conv.padding, pool.kernel_size) == ((3, 3), (2, 2), (1, 1), (2, 2))
    assert all(type(v) is int for v in conv.kernel_size + conv.stride + conv.padding + pool.stride)


@pytest.mark.parametrize("value", [True, np.bool_(True), 2.0, "2", (2, 2, 2), (2, True), None])
def test_pair_refuses_what_is_not_an_int_or_two(value):
    with pytest.raises(TypeError, match=r"stride must be an int or a pair of ints, got "):
        pair(value, "stride")


@pytest.mark.parametrize("args,error,message", [
    ((5, 3, -1), ValueError, r"stride must be an int >= 1, got -1"),
    ((5, 3, 0), ValueError, r"stride must be an int >= 1, got 0"),
    ((5, 0), ValueError, r"kernel must be an int >= 1, got 0"),
    ((5, 3, 1, -1), ValueError, r"padding must be an int >= 0, got -1"),
    ((0, 1), ValueError, r"n must be an int >= 1, got 0"),
    ((5.0, 3), TypeError, r"n must be an int >= 1, got float 5.0"),
    ((5, (3, 3)), TypeError, r"kernel must be an int >= 1, got tuple"),
    ((2, 5, 1, 1), ValueError, r"kernel size 5 is larger than the padded input 2 \+ 2\*1 = 4: the output would "
                               r"have no position"),
])
def test_conv_output_size_checks_its_arguments(args, error, message):
    with pytest.raises(error, match=message):
        conv_output_size(*args)


def test_conv_transpose_output_size_checks_its_arguments():
    assert conv_transpose_output_size(np.int64(5), 4, 2, 2, output_padding=1) == 9
    with pytest.raises(ValueError, match=r"transposed convolution output would be -5 for input 1, kernel 1, "
                                         r"stride 1, padding 3: the padding is too large"):
        conv_transpose_output_size(1, 1, 1, 3)
    with pytest.raises(ValueError, match=r"output_padding must satisfy 0 <= output_padding < stride, got 2 "
                                         r"with stride 2"):
        conv_transpose_output_size(3, 2, 2, 0, output_padding=2)
    with pytest.raises(ValueError, match=r"output_padding must be an int >= 0, got -1"):
        conv_transpose2d_output_shape((3, 3), 2, 2, output_padding=(0, -1))
    with pytest.raises(ValueError, match=r"n must be an int >= 1, got 0"):
        conv_transpose2d_output_shape((0, 3), 2)
