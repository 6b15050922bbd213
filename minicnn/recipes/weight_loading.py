"""How long VGG16 takes to load from each weight format, and how much memory, each in a fresh process.

    python -m minicnn.recipes.weight_loading [--folder DIR] [--repeat 3]

Writes VGG16 with random weights (vgg16(seed=0), 138 million float32 weights, 528 MB) once into
DIR as .npz and .safetensors (minicnn's save_weights) and, when torch is installed, as .pth
(torch.save, zip and legacy format). Then each step runs alone in a fresh child process, `--repeat`
times: reading a file (load_weights), reading it into a ready network (load_imagenet_model), and
building vgg16(seed=0) with random weights. A child reports the step's seconds and its peak resident
memory (VmHWM from /proc/self/status) before and after the step; the table gives the fastest run
and the peak after the step, both in MB (10**6 bytes) and as a multiple of the weights' bytes.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = {
    "read": "from minicnn.io import load_weights\nresult = load_weights(PATH)",
    "ready network": "from minicnn.models import load_imagenet_model\nresult = load_imagenet_model('vgg16', PATH)",
    "vgg16(seed=0)": "from minicnn.models import vgg16\nresult = vgg16(seed=0)",
    "torch.load": "import torch\nresult = torch.load(PATH, weights_only=True)",
}

CHILD = r"""
import json, sys, time
import numpy as np
import minicnn.io, minicnn.models
PATH = sys.argv[1]

def peak_bytes():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) * 1024

before = peak_bytes()
start = time.perf_counter()
exec(sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_before": before, "peak_after": peak_bytes()}))
"""


def write_files(folder):
    """VGG16 (seed 0) as every format this machine can write; returns {label: path} and the weights' bytes."""
    from minicnn.io import save_weights
    from minicnn.models import minicnn_to_torchvision, vgg16

    state = minicnn_to_torchvision(vgg16(seed=0).state_dict())
    nbytes = sum(array.nbytes for array in state.values())
    files = {".npz": folder / "vgg16.npz", ".safetensors": folder / "vgg16.safetensors"}
    for path in files.values():
        if not path.exists():
            save_weights(path, state)
    try:
        import torch
    except ImportError:
        return files, nbytes
    for label, zip_format in ((".pth (zip)", True), (".pth (legacy)", False)):
        files[label] = folder / f"vgg16_{'zip' if zip_format else 'legacy'}.pth"
        if not files[label].exists():
            torch.save({k: torch.from_numpy(v) for k, v in state.items()}, files[label],
                       _use_new_zipfile_serialization=zip_format)
    return files, nbytes


def run_step(step, path, repeat):
    """The fastest of `repeat` runs of one step in fresh processes: {"seconds", "peak_before", "peak_after"}."""
    runs = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), STEPS[step]],
                              capture_output=True, text=True, timeout=600, check=True)
        runs.append(json.loads(done.stdout))
    return min(runs, key=lambda run: run["seconds"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, help="where the VGG16 files are written (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the fastest is reported")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        files, nbytes = write_files(folder)
        print(f"VGG16 weights: {nbytes / 1e6:.0f} MB; fastest of {args.repeat} runs, each in a fresh process "
              f"({time.strftime('%Y-%m-%d %H:%M')})\n")
        print("| file | step | seconds | peak before (MB) | peak after (MB) | peak after / weights |")
        print("|---|---|---|---|---|---|")
        jobs = [(label, step) for label in files for step in ("read", "ready network")]
        jobs += [(".pth (zip)", "torch.load")] if ".pth (zip)" in files else []
        jobs += [("(none)", "vgg16(seed=0)")]
        for label, step in jobs:
            run = run_step(step, files.get(label, ""), args.repeat)
            print(f"| {label} | {step} | {run['seconds']:.2f} | {run['peak_before'] / 1e6:.0f} | "
                  f"{run['peak_after'] / 1e6:.0f} | {run['peak_after'] / nbytes:.2f} |", flush=True)


if __name__ == "__main__":
    main()
