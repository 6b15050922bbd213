"""How long the Numba kernels take to compile, and how long a second process waits for them.

    python -m minicnn.recipes.compile_time

Runs two fresh Python processes that share one empty, temporary Numba cache directory:
  1. the first finds no cache: it compiles every kernel of minicnn.kernels on its first call
     (float32, then float64: each dtype is compiled separately) and writes the machine code to the
     cache (`cache=True`);
  2. the second loads that machine code instead of compiling: we time it from its launch to the
     first result of every kernel.
The repository's own cache (minicnn/__pycache__) is not touched, so the numbers are always "cold".
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

def first_calls():
    """In the child process: import the kernels, call each one once per dtype, time every step."""
    import numpy as np

    start, cpu_start = time.perf_counter(), time.process_time()
    from minicnn import kernels

    times = {"import": time.perf_counter() - start}
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        x = np.arange(2 * 3 * 6 * 5, dtype=dtype).reshape(2, 3, 6, 5)
        geometry = ((3, 2), (2, 1), (1, 1))
        w = np.ones((4, 3, 3, 2), dtype=dtype)
        w3 = np.ones((3, 3, 3, 3), dtype=dtype)  # 3x3 filters, 3 -> 3 channels, for Winograd
        calls = {
            "conv2d (tiled)": lambda: kernels.conv2d(x, w, None, *geometry[1:]),
            "conv2d_weight_grad (tiled)": lambda: kernels.conv2d_weight_grad(
                kernels.conv2d(x, w, None, *geometry[1:]), x, *geometry),
            "conv_transpose2d (tiled)": lambda: kernels.conv_transpose2d(
                kernels.conv2d(x, w, None, *geometry[1:]), w, None, x.shape[2:], *geometry[1:]),
            "im2col": lambda: kernels.im2col(x, *geometry),
            "col2im": lambda: kernels.col2im(kernels.im2col(x, *geometry), x.shape, *geometry),
            "max_pool": lambda: kernels.max_pool(x, *geometry),
            "max_pool 2x2": lambda: kernels.max_pool(x, (2, 2), (2, 2), (0, 0)),
            "unpool": lambda: kernels.unpool(*kernels.max_pool(x, *geometry), x.shape[2:]),
            "relu": lambda: kernels.relu(x),
            "relu_backward": lambda: kernels.relu_backward(x, x, "guided"),
            "winograd conv2d": lambda: kernels.winograd_conv2d(x, w3, None, 1),
            "winograd conv_transpose2d": lambda: kernels.winograd_conv_transpose2d(x, w3, None, 1),
        }
        for kernel, call in calls.items():
            t = time.perf_counter()
            call()
            times[f"{kernel} ({name})"] = time.perf_counter() - t
    times["total in process"] = time.perf_counter() - start
    times["total in process, CPU time"] = time.process_time() - cpu_start  # less hurt by a busy machine
    print(json.dumps(times))


def run_child(cache_dir):
    """Run this script as a child process with the given Numba cache; return (timings, wall time)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "minicnn.recipes.compile_time", "--child"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"child process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def main(argv=None):
    argparse.ArgumentParser(prog="python -m minicnn.recipes.compile_time", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="minicnn-numba-cache-") as cache_dir:
        cold, cold_wall = run_child(cache_dir)
        warm, warm_wall = run_child(cache_dir)
    print(f"{'step':28s} {'1st process (compiles)':>24s} {'2nd process (cache)':>20s}")
    for step in cold:
        print(f"{step:28s} {cold[step]:22.2f} s {warm[step]:18.2f} s")
    print(f"{'launch to exit (wall clock)':28s} {cold_wall:22.2f} s {warm_wall:18.2f} s")
    print(f"\nfirst-call compile time, all kernels, both dtypes: {cold['total in process'] - cold['import']:.1f} s"
          f" (import included: {cold['total in process']:.1f} s wall, {cold['total in process, CPU time']:.1f} s CPU)")
    print(f"second process, launch to the last first result:  {warm_wall:.1f} s (includes Python start-up and exit)")


if __name__ == "__main__":
    if "--child" in sys.argv:
        first_calls()
    else:
        main()
