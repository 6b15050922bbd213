"""Time minicnn against PyTorch on the same shapes, in one process, and print the ratios.

    python scripts/bench.py                 # all ops, all shapes (a)-(e), and VGG16 if available
    python scripts/bench.py --shapes b c    # a subset
    python scripts/bench.py --repeat 20
    python scripts/bench.py --no-vgg --no-train --shapes b c e --repeat 9   # the convolution targets
    python scripts/bench.py --markdown bench.md   # also write the tables as Markdown (the README's)

Both libraries run on the same threads (torch.set_num_threads = the number of cores). Each time is
the median of --repeat runs, timed in three alternating rounds per library (minicnn, torch,
minicnn, ...), each round after --warmup runs and a 50 ms pause (see paired_median_ms).
ratio = minicnn time / torch time (lower is better).
Pooling, un-pooling and ReLU run on the convolution's output (N, F, H, W), with a 2x2 window.
The last rows time one training step (forward, cross-entropy, backward, Adam update) of the
shapes models at batch 64 on 64x64 images, minicnn's train_step against the same network in torch.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

from minicnn import ops

SHAPES = {  # name: (N, C, F, H, W, kernel, padding)
    "a": (32, 3, 32, 32, 32, 3, 1),
    "b": (32, 32, 64, 16, 16, 3, 1),
    "c": (8, 64, 64, 56, 56, 3, 1),
    "d": (1, 3, 64, 224, 224, 3, 1),
    "e": (1, 256, 256, 28, 28, 3, 1),
}


def run_times(fn, repeat, warmup):
    """Call fn `warmup` times untimed, then `repeat` times: the list of those calls' times in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def paired_median_ms(ours, theirs, repeat, warmup, rounds=3):
    """Median times (ms) over `repeat` calls each of ours and theirs (None: nan), timed in alternating
    rounds with a short pause between them: each library's worker threads may spin for a while after
    its last call (stealing the cores from the next call), and the pause keeps that from landing on the other
    library's clock; the rounds spread any slow phase of the machine over both."""
    ours_times, theirs_times = [], []
    per_round = max(1, -(-repeat // rounds))
    for _ in range(rounds):
        for fn, times in ((ours, ours_times), (theirs, theirs_times)):
            if fn is None:
                continue
            time.sleep(0.05)
            times += run_times(fn, per_round, warmup)
    return (1000 * statistics.median(ours_times),
            1000 * statistics.median(theirs_times) if theirs_times else float("nan"))


def minicnn_cases(x, w, dy, pooled, switches, padding):
    return {
        "conv2d forward": lambda: ops.conv2d(x, w, None, 1, padding),
        "conv2d backward dx+dw": lambda: ops.conv2d_backward(dy, x, w, 1, padding),
        "conv_transpose2d": lambda: ops.conv_transpose2d(dy, w, None, 1, padding),
        "max_pool2d + switches": lambda: ops.max_pool2d(dy, 2),
        "max_unpool2d": lambda: ops.max_unpool2d(pooled, switches, dy.shape[2:]),
        "relu": lambda: ops.relu(dy),
    }


def torch_cases(torch, x, w, dy, pooled, switches, padding):
    F = torch.nn.functional
    tx, tw, tdy = torch.tensor(x), torch.tensor(w), torch.tensor(dy)
    tpooled, tswitches = torch.tensor(pooled), torch.tensor(switches)
    tx_grad = tx.clone().requires_grad_(True)
    tw_grad = tw.clone().requires_grad_(True)

    def conv_backward():
        out = F.conv2d(tx_grad, tw_grad, None, 1, padding)
        return torch.autograd.grad(out, (tx_grad, tw_grad), tdy)

    def conv_backward_only():  # the backward kernels alone, without the forward pass
        return torch.ops.aten.convolution_backward(tdy, tx, tw, None, [1, 1], [padding, padding], [1, 1],
                                                   False, [0, 0], 1, [True, True, False])

    with torch.no_grad():
        return {
            "conv2d forward": lambda: F.conv2d(tx, tw, None, 1, padding),
            "conv2d backward dx+dw": conv_backward_only if hasattr(torch.ops.aten, "convolution_backward") else conv_backward,
            "conv_transpose2d": lambda: F.conv_transpose2d(tdy, tw, None, 1, padding),
            "max_pool2d + switches": lambda: F.max_pool2d(tdy, 2, return_indices=True),
            "max_unpool2d": lambda: F.max_unpool2d(tpooled, tswitches, 2, output_size=tdy.shape[2:]),
            "relu": lambda: F.relu(tdy),
        }


def bench_shape(name, torch, repeat, warmup):
    n, c, f, h, wd, k, p = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
    w = rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.1
    dy = rng.standard_normal((n, f, h, wd), dtype=np.float32)
    pooled, switches = ops.max_pool2d(dy, 2)
    ours = minicnn_cases(x, w, dy, pooled, switches, p)
    theirs = torch_cases(torch, x, w, dy, pooled, switches, p) if torch else {}
    rows = []
    for op, fn in ours.items():
        rows.append((op, name, *paired_median_ms(fn, theirs.get(op), repeat, warmup)))
    return rows


def bench_vgg16(torch, repeat, warmup):
    """VGG16 on one 224x224 image: forward, and forward + input gradient (a saliency pass)."""
    try:
        from minicnn.models import vgg16
    except ImportError:
        return []
    net = vgg16(seed=0)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)

    def saliency_pass():
        scores = net.forward(x)
        seed = np.zeros_like(scores)
        seed[0, scores[0].argmax()] = 1
        return net.backward(seed, param_grads=False)

    torch_forward = torch_saliency = None
    if torch:
        tnet = torch_twin(torch, net).eval()
        tx = torch.tensor(x)

        def torch_forward():
            with torch.no_grad():
                return tnet(tx)

        def torch_saliency():
            xg = tx.clone().requires_grad_(True)
            scores = tnet(xg)
            scores[0, scores[0].argmax()].backward()
            return xg.grad

    return [("VGG16 forward", "224", *paired_median_ms(lambda: net.forward(x), torch_forward, repeat, warmup)),
            ("VGG16 forward + input grad", "224", *paired_median_ms(saliency_pass, torch_saliency, repeat, warmup))]


def bench_training(torch, repeat, warmup, batch=64):
    """One training step of each shapes model: forward, loss, backward and an Adam update."""
    from minicnn import models
    from minicnn.train import Adam, train_step
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 64, 64), dtype=np.float32)
    labels = rng.integers(0, models.SHAPES_CLASSES, batch)
    rows = []
    for name in ("shapes_cam", "shapes_vgg"):
        net = getattr(models, name)(seed=0).train()
        optimizer = Adam(net)
        torch_step = None
        if torch:
            tnet = torch_twin(torch, net).train()
            toptimizer = torch.optim.Adam(tnet.parameters(), lr=1e-3)
            tx, tlabels = torch.tensor(x), torch.tensor(labels)

            def torch_step():
                toptimizer.zero_grad()
                torch.nn.functional.cross_entropy(tnet(tx), tlabels).backward()
                toptimizer.step()

        ours_ms, torch_ms = paired_median_ms(lambda: train_step(net, optimizer, x, labels), torch_step, repeat, warmup)
        rows.append((f"train_step {name}", str(batch), ours_ms, torch_ms))
    return rows


def torch_twin(torch, net):
    """The same network in torch (nn.Sequential), built from minicnn's layer list with its weights."""
    from minicnn import layers as L
    nn = torch.nn
    modules = []
    for name in net.names:
        layer = net[name]
        if isinstance(layer, L.Conv2d):
            module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, L.Linear):
            module = nn.Linear(layer.in_features, layer.out_features)
        elif isinstance(layer, L.ReLU):
            module = nn.ReLU()
        elif isinstance(layer, L.MaxPool2d):
            module = nn.MaxPool2d(layer.kernel_size, layer.stride)
        elif isinstance(layer, L.Flatten):
            module = nn.Flatten()
        elif type(layer).__name__ == "AdaptiveAvgPool2d":
            module = nn.AdaptiveAvgPool2d(layer.output_size)
        elif type(layer).__name__ == "GlobalAvgPool2d":
            module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        elif isinstance(layer, L.Dropout):
            module = nn.Dropout(layer.p)
        else:
            raise TypeError(f"no torch twin for {layer!r}")
        for key, value in layer.params.items():
            getattr(module, key).data = torch.tensor(value)
        modules.append(module)
    return nn.Sequential(*modules)


SHAPE_TITLES = {name: f"({name}) N{n} {c}->{f} {h}x{w}" for name, (n, c, f, h, w, _, _) in SHAPES.items()}


def cell(ours_ms, torch_ms):
    return f"{ours_ms:.2f} / {torch_ms:.2f} ({ours_ms / torch_ms:.2f})"


def markdown(rows, header):
    """The rows as Markdown: one table of the ops by benchmark shape, one of the whole-network rows."""
    shapes = [name for name in SHAPES if any(row[1] == name for row in rows)]
    ops_in_order = list(dict.fromkeys(op for op, shape, _, _ in rows if shape in SHAPES))
    by_key = {(op, shape): (ours, theirs) for op, shape, ours, theirs in rows}
    lines = [header, "", "minicnn ms / torch ms (ratio):", "",
             "| op | " + " | ".join(SHAPE_TITLES[name] for name in shapes) + " |",
             "|---|" + "---|" * len(shapes)]
    for op in ops_in_order:
        lines.append(f"| {op} | " + " | ".join(cell(*by_key[op, name]) if (op, name) in by_key else "-"
                                              for name in shapes) + " |")
    networks = [row for row in rows if row[1] not in SHAPES]
    if networks:
        lines += ["", "| whole network | input | minicnn ms / torch ms (ratio) |", "|---|---|---|"]
        lines += [f"| {op} | {shape} | {cell(ours, theirs)} |" for op, shape, ours, theirs in networks]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-vgg", action="store_true", help="skip the VGG16 rows")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step rows")
    parser.add_argument("--markdown", default=None, help="also write the tables as Markdown to this file")
    args = parser.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(os.cpu_count())
    except ImportError:
        torch = None
        print("PyTorch is not importable: printing minicnn times only", file=sys.stderr)

    start = time.perf_counter()
    ops.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 3, 3), np.float32))
    ops.max_pool2d(np.zeros((1, 1, 4, 4), np.float32), 2)
    print(f"first call (kernel compile or cache load): {time.perf_counter() - start:.2f} s")
    print(f"{'op':28s} {'shape':>5s} {'minicnn ms':>11s} {'torch ms':>9s} {'ratio':>6s}")
    rows = []
    for name in args.shapes:
        rows += bench_shape(name, torch, args.repeat, args.warmup)
    if not args.no_vgg:
        rows += bench_vgg16(torch, max(6, args.repeat // 2), 1)
    if not args.no_train:
        rows += bench_training(torch, max(6, args.repeat // 2), 1)
    for op, shape, ours_ms, torch_ms in sorted(rows, key=lambda r: (r[0], r[1])):
        print(f"{op:28s} {shape:>5s} {ours_ms:11.2f} {torch_ms:9.2f} {ours_ms / torch_ms:6.2f}")
    if args.markdown:
        import platform
        import numba
        shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--markdown", args.markdown)]
        header = (f"`python scripts/bench.py {' '.join(shown)}`: "
                  f"{os.cpu_count()} cores ({platform.machine()}), Numba threading layer "
                  f"`{numba.threading_layer()}`, torch {torch.__version__ if torch else 'not installed'}.")
        with open(args.markdown, "w") as file:
            file.write(markdown(rows, header))
        print(f"Markdown tables written to {args.markdown}")


if __name__ == "__main__":
    main()
