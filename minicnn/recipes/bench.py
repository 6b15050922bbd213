"""Time minicnn and PyTorch on the same work, each library alone in its own fresh process.

    minicnn bench                               # every case, two rounds (about 15-20 minutes on 2 cores)
    minicnn bench --cases conv_fwd_b conv_bwd_b # a subset (names: minicnn bench --list)
    minicnn bench --quick                       # short rounds, for a first look while developing
    minicnn bench --markdown docs/bench.md      # also write the table as Markdown
    minicnn bench --algorithm im2col            # minicnn's convolutions by im2col only (default: auto)
    minicnn bench --algorithm-rule              # im2col against Winograd on a sweep of layer shapes
    minicnn bench --threads 1 --cpu-time        # one thread each, CPU time per call: steadier on a busy machine

How one number is measured (see docs/performance.md for why):
  - every (library, case) runs in a fresh Python process that imports only that library (as a user
    runs it): the two libraries' thread pools never share a process;
  - the case is called until its times settle (the median of a batch of calls within SETTLE of the
    previous batch's, at least MIN_WARMUP_BATCHES batches), then --calls more times: the median of those;
  - --rounds rounds, the libraries alternating which goes first; each library keeps its best round.
GFLOP/s counts the multiply-adds of the direct convolutions and matrix products (2 per multiply-add),
whatever algorithm a library uses: a Winograd convolution does fewer and can pass the machine's peak.
The header gives the machine's sgemm rate (NumPy's float32 matrix product of 2048 x 2048 matrices,
measured in its own process) as the yardstick.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

SHAPES = {  # name: (N, C, F, H, W, kernel, padding)
    "a": (32, 3, 32, 32, 32, 3, 1),
    "b": (32, 32, 64, 16, 16, 3, 1),
    "c": (8, 64, 64, 56, 56, 3, 1),
    "d": (1, 3, 64, 224, 224, 3, 1),
    "e": (1, 256, 256, 28, 28, 3, 1),
}
OPS = {  # op key: (title, how many direct convolutions' work it does: forward 1, dx 1, dw 1)
    "conv_fwd": ("conv2d forward", 1),
    "conv_bwd": ("conv2d backward dx+dw", 2),
    "conv_t": ("conv_transpose2d", 1),
    "pool": ("max_pool2d + switches", 0),
    "unpool": ("max_unpool2d", 0),
    "relu": ("relu", 0),
}
NETWORKS = {  # case: (title, network, batch, passes of its direct work: forward 1, + input gradient 2, train 3)
    "vgg16_fwd": ("VGG16 forward, one 224x224 image", "vgg16", 1, 1),
    "vgg16_saliency": ("VGG16 forward + input gradient (saliency)", "vgg16", 1, 2),
    "train_shapes_cam": ("train step shapes_cam, 64 images 64x64", "shapes_cam", 64, 3),
    "train_shapes_vgg": ("train step shapes_vgg, 64 images 64x64", "shapes_vgg", 64, 3),
}
CASES = [f"{op}_{shape}" for op in OPS for shape in SHAPES] + list(NETWORKS)
LIBRARIES = ("minicnn", "torch")
SETTLE = 0.05  # warm-up ends when a batch's median is within 5% of the previous batch's
MIN_WARMUP_BATCHES = 3
MAX_WARMUP_SECONDS = 20.0
BATCH_SECONDS = 0.3  # a warm-up batch lasts about this long (at least 3 calls)
MAX_TIMED_SECONDS = 6.0  # fewer than --calls calls (at least 7) where they would take longer


# ----------------------------------------------------------------------------------------------
# the cases: what each library runs


def case_title(case):
    if case in NETWORKS:
        return NETWORKS[case][0]
    op, shape = case.rsplit("_", 1)
    n, c, f, h, w, _, _ = SHAPES[shape]
    return f"{OPS[op][0]} ({shape}) N{n} {c}->{f} {h}x{w}"


def conv_operands(shape):
    n, c, f, h, wd, k, p = SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, wd), dtype=np.float32)
    w = rng.standard_normal((f, c, k, k), dtype=np.float32) * np.float32(0.1)
    dy = rng.standard_normal((n, f, h + 2 * p - k + 1, wd + 2 * p - k + 1), dtype=np.float32)
    return x, w, dy, p


def minicnn_call(case, algorithm="auto"):
    """The function minicnn runs for this case (built from the same data as torch's); algorithm: its
    convolutions' (ops.choose_conv_algorithm)."""
    from minicnn import ops
    if case in NETWORKS:
        return minicnn_network_call(case, algorithm)
    op, shape = case.rsplit("_", 1)
    x, w, dy, p = conv_operands(shape)
    pooled, switches = ops.max_pool2d(dy, 2)
    return {
        "conv_fwd": lambda: ops.conv2d(x, w, None, 1, p, algorithm),
        "conv_bwd": lambda: ops.conv2d_backward(dy, x, w, 1, p, algorithm),
        "conv_t": lambda: ops.conv_transpose2d(dy, w, None, 1, p, algorithm=algorithm),
        "pool": lambda: ops.max_pool2d(dy, 2),
        "unpool": lambda: ops.max_unpool2d(pooled, switches, dy.shape[2:]),
        "relu": lambda: ops.relu(dy),
    }[op]


def network_inputs(case):
    from minicnn import models
    _, name, batch, _ = NETWORKS[case]
    net = getattr(models, name)(seed=0)
    size = 224 if name == "vgg16" else 64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size), dtype=np.float32)
    labels = rng.integers(0, 1000 if name == "vgg16" else models.SHAPES_CLASSES, batch)
    return net, x, labels


def minicnn_network_call(case, algorithm):
    from minicnn.train import Adam, train_step
    net, x, labels = network_inputs(case)
    net.set_conv_algorithm(algorithm)
    if case == "vgg16_fwd":
        return lambda: net.forward(x)
    if case == "vgg16_saliency":
        def saliency_pass():
            scores = net.forward(x)
            seed = np.zeros_like(scores)
            seed[0, scores[0].argmax()] = 1
            return net.backward(seed, param_grads=False)
        return saliency_pass
    net.train()
    optimizer = Adam(net)
    return lambda: train_step(net, optimizer, x, labels)


def torch_call(case):
    """The function torch runs for this case."""
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    F = torch.nn.functional
    if case in NETWORKS:
        return torch_network_call(torch, case)
    op, shape = case.rsplit("_", 1)
    x, w, dy, p = conv_operands(shape)
    tx, tw, tdy = torch.tensor(x), torch.tensor(w), torch.tensor(dy)
    tpooled, tswitches = F.max_pool2d(tdy, 2, return_indices=True)

    def conv_backward():  # the backward kernels alone, without the forward pass
        return torch.ops.aten.convolution_backward(tdy, tx, tw, None, [1, 1], [p, p], [1, 1],
                                                   False, [0, 0], 1, [True, True, False])

    def no_grad(fn):
        def call():
            with torch.no_grad():
                return fn()
        return call

    return no_grad({
        "conv_fwd": lambda: F.conv2d(tx, tw, None, 1, p),
        "conv_bwd": conv_backward,
        "conv_t": lambda: F.conv_transpose2d(tdy, tw, None, 1, p),
        "pool": lambda: F.max_pool2d(tdy, 2, return_indices=True),
        "unpool": lambda: F.max_unpool2d(tpooled, tswitches, 2, output_size=tdy.shape[2:]),
        "relu": lambda: F.relu(tdy),
    }[op])


def torch_network_call(torch, case):
    net, x, labels = network_inputs(case)
    tnet = torch_twin(torch, net)
    tx = torch.tensor(x)
    if case == "vgg16_fwd":
        tnet.eval()

        def forward():
            with torch.no_grad():
                return tnet(tx)
        return forward
    if case == "vgg16_saliency":
        tnet.eval()
        for parameter in tnet.parameters():  # as minicnn's param_grads=False: the input gradient only
            parameter.requires_grad_(False)

        def saliency_pass():
            xg = tx.clone().requires_grad_(True)
            scores = tnet(xg)
            scores[0, scores[0].argmax()].backward()
            return xg.grad
        return saliency_pass
    tnet.train()
    optimizer = torch.optim.Adam(tnet.parameters(), lr=1e-3)
    tlabels = torch.tensor(labels)

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(tnet(tx), tlabels).backward()
        optimizer.step()
    return step


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


def case_flops(case):
    """Floating-point operations of the case done the direct way: 2 per multiply-add of its
    convolutions and matrix products (0 for pooling and ReLU)."""
    if case not in NETWORKS:
        op, shape = case.rsplit("_", 1)
        n, c, f, h, w, k, p = SHAPES[shape]
        ho, wo = h + 2 * p - k + 1, w + 2 * p - k + 1
        return OPS[op][1] * 2 * n * f * c * k * k * ho * wo
    from minicnn import layers as L
    _, name, batch, passes = NETWORKS[case]
    net, x, _ = network_inputs(case)
    flops, a = 0, x[:1]
    for layer_name in net.names:  # one image's forward pass, layer by layer
        layer = net[layer_name]
        out = layer.forward(a)
        if isinstance(layer, L.Conv2d):
            flops += 2 * out.size * layer.in_channels * int(np.prod(layer.kernel_size))
        elif isinstance(layer, L.Linear):
            flops += 2 * out.size * layer.in_features
        a = out
    return passes * batch * flops


# ----------------------------------------------------------------------------------------------
# one worker process: one library, one case


CLOCK = time.perf_counter  # the worker's clock: wall time, or time.process_time with --cpu-time


def time_calls(fn, count):
    times = []
    for _ in range(count):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return times


def settle(fn):
    """Call fn in batches until the batch medians settle; return (calls made, last median in s)."""
    start = time.perf_counter()
    first = time_calls(fn, 1)[0]  # a first call may compile or load kernels
    batch = max(3, min(50, int(BATCH_SECONDS / max(first, 1e-4))))
    previous, calls, batches = None, 1, 0
    while True:
        median = statistics.median(time_calls(fn, batch))
        calls, batches = calls + batch, batches + 1
        if batch >= 3 and first > 10 * median:  # the first call compiled: resize the batches
            batch = max(3, min(50, int(BATCH_SECONDS / max(median, 1e-4))))
            first = median
        elif previous and batches >= MIN_WARMUP_BATCHES and abs(median - previous) <= SETTLE * previous:
            return calls, median
        if time.perf_counter() - start > MAX_WARMUP_SECONDS:
            return calls, median
        previous = median


def worker(library, case, calls, algorithm):
    """Run in a fresh process: build the case with one library, warm up, time; print one JSON line."""
    fn = minicnn_call(case, algorithm) if library == "minicnn" else torch_call(case)
    warmup_calls, settled = settle(fn)
    count = max(7, min(calls, int(MAX_TIMED_SECONDS / max(settled, 1e-6))))
    times = time_calls(fn, count)
    print(json.dumps({"median_ms": 1000 * statistics.median(times), "calls": count, "warmup_calls": warmup_calls,
                      "threads": threads_used(library)}))


def threads_used(library):
    if library == "torch":
        import torch
        return torch.get_num_threads()
    import numba
    return f"{numba.get_num_threads()} ({numba.threading_layer()})"


def sgemm_worker():
    """Run in a fresh process: NumPy's float32 matrix product of 2048 x 2048 matrices, best of 10, GFLOP/s."""
    n = 2048
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    for _ in range(3):
        a @ b
    best = min(time_calls(lambda: a @ b, 10))
    print(json.dumps({"gflops": 2 * n**3 / best / 1e9}))


# ----------------------------------------------------------------------------------------------
# the rule of algorithm="auto": im2col against Winograd, minicnn alone

RULE_SHAPES = [  # (N, C, F, H = W): 3x3 stride-1 layers with padding 1, from few channels to many
    (32, 3, 32, 32), (1, 3, 64, 224), (8, 8, 8, 56), (8, 16, 16, 56), (64, 16, 16, 64), (64, 16, 32, 32),
    (8, 32, 32, 56), (32, 32, 64, 16), (8, 64, 64, 56), (1, 64, 64, 224), (1, 256, 256, 28), (1, 512, 512, 14),
]


def algorithm_rule(markdown=None, calls=9, rounds=3):
    """Time conv2d forward, its input gradient and its backward pass (dx + dw) by im2col and by Winograd on
    RULE_SHAPES (float32): medians of `calls` calls, rounds alternating between the two, the best round kept."""
    from minicnn import ops
    lines = ["| layer N, C->F, HxW | forward im2col ms | forward Winograd ms | ratio | "
             "input gradient im2col ms | Winograd ms | ratio | dx + dw im2col ms | Winograd ms | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, c, f, h in RULE_SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = rng.standard_normal((f, c, 3, 3), dtype=np.float32)
        dy = rng.standard_normal((n, f, h, h), dtype=np.float32)
        best = {}
        for r in range(rounds):
            for algorithm in ("im2col", "winograd") if r % 2 == 0 else ("winograd", "im2col"):
                for op, fn in (("fwd", lambda: ops.conv2d(x, w, None, 1, 1, algorithm)),
                               ("dx", lambda: ops.conv2d_input_gradient(dy, w, x.shape, 1, 1, algorithm)),
                               ("bwd", lambda: ops.conv2d_backward(dy, x, w, 1, 1, algorithm))):
                    time_calls(fn, 2)
                    ms = 1000 * statistics.median(time_calls(fn, calls))
                    best[op, algorithm] = min(ms, best.get((op, algorithm), float("inf")))
        cells = []
        for op in ("fwd", "dx", "bwd"):
            cells += [f"{best[op, 'im2col']:.2f}", f"{best[op, 'winograd']:.2f}",
                      f"{best[op, 'winograd'] / best[op, 'im2col']:.2f}"]
        lines.append(f"| N{n}, {c}->{f}, {h}x{h} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    if markdown:
        with open(markdown, "w") as file:
            file.write("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# the parent: spawn the workers, keep the best round, print the table


def run_worker(*arguments, threads=None):
    """Run this module in a fresh Python process with these arguments (and, if given, that many threads
    for Numba, OpenMP and the BLAS libraries); its last output line as JSON."""
    command = [sys.executable, "-m", "minicnn.recipes.bench", *arguments]
    env = dict(os.environ)
    if threads:
        env.update({name: str(threads) for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS",
                                                    "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(cases, libraries, rounds, calls, algorithm, threads=None, cpu_time=False):
    """{(library, case): best median ms over the rounds}; in each round the libraries alternate."""
    best = {}
    clock = ["--cpu-time"] if cpu_time else []
    for r in range(rounds):
        for case in cases:
            order = libraries if r % 2 == 0 else libraries[::-1]
            for library in order:
                ms = run_worker("--worker", library, case, "--calls", str(calls), "--algorithm", algorithm, *clock,
                                threads=threads)["median_ms"]
                best[library, case] = min(ms, best.get((library, case), float("inf")))
                print(f"  round {r + 1}: {library:8s} {case_title(case):50s} {ms:9.2f} ms", flush=True)
    return best


def table(cases, libraries, best):
    """The results as Markdown rows: ms of each library, the ratio, GFLOP/s of each."""
    header = "| case | " + " | ".join(f"{lib} ms" for lib in libraries)
    if len(libraries) == 2:
        header += " | minicnn / torch"
    header += " | " + " | ".join(f"{lib} GFLOP/s" for lib in libraries) + " |"
    lines = [header, "|---|" + "---:|" * (header.count("|") - 2)]
    for case in cases:
        flops = case_flops(case)
        cells = [f"{best[lib, case]:.2f}" for lib in libraries]
        if len(libraries) == 2:
            cells.append(f"{best['minicnn', case] / best['torch', case]:.2f}")
        cells += [f"{flops / best[lib, case] / 1e6:.0f}" if flops else "-" for lib in libraries]
        lines.append(f"| {case_title(case)} | " + " | ".join(cells) + " |")
    return lines


def conditions(libraries, sgemm, command):
    import numba
    versions = [f"numpy {np.__version__}", f"numba {numba.__version__}"]
    if "torch" in libraries:
        import torch
        versions.append(f"torch {torch.__version__}")
    return (f"`{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} cores "
            f"({platform.machine()}, {platform.processor() or platform.system()}), {', '.join(versions)}; "
            f"machine sgemm (NumPy float32, 2048^3): {sgemm:.0f} GFLOP/s.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minicnn bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES, metavar="CASE",
                        help="which cases (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per (library, case); the best is kept")
    parser.add_argument("--calls", type=int, default=31, help="timed calls per round, after the warm-up")
    parser.add_argument("--quick", action="store_true", help="one round of 7 calls: a first look, not a result")
    parser.add_argument("--minicnn-only", action="store_true", help="do not run torch")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown to FILE")
    parser.add_argument("--algorithm", default="auto", choices=["auto", "im2col", "winograd"],
                        help="minicnn's convolution algorithm (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for each library (default: all cores)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time each call by the process's CPU time (all its threads) instead of the wall clock")
    parser.add_argument("--algorithm-rule", action="store_true",
                        help="time im2col against Winograd on a sweep of 3x3 layers (minicnn only, one process)")
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--sgemm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(f"{case:20s} {case_title(case)}" for case in CASES))
        return 0
    if args.sgemm:
        sgemm_worker()
        return 0
    if args.worker:
        global CLOCK
        CLOCK = time.process_time if args.cpu_time else time.perf_counter
        worker(*args.worker, args.calls, args.algorithm)
        return 0
    if args.algorithm_rule:
        algorithm_rule(args.markdown)
        return 0
    if args.quick:
        args.rounds, args.calls = 1, 7
    libraries = ("minicnn",) if args.minicnn_only else LIBRARIES
    if "torch" in libraries:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("minicnn bench: PyTorch is not installed: timing minicnn only", file=sys.stderr)
            libraries = ("minicnn",)
    sgemm = run_worker("--sgemm")["gflops"]
    shown = " ".join(a for a in (sys.argv[1:] if argv is None else argv))
    command = f"minicnn bench {shown}".strip()
    print(conditions(libraries, sgemm, command), flush=True)
    best = measure(args.cases, libraries, args.rounds, args.calls, args.algorithm, args.threads, args.cpu_time)
    lines = table(args.cases, libraries, best)
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(conditions(libraries, sgemm, command) + "\n\n" + "\n".join(lines) + "\n")
        print(f"table written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
