"""Get torchvision's ImageNet weights for AlexNet or VGG16 and convert them to minicnn's .npz.

    python -m minicnn.recipes.fetch_weights vgg16                    # download (where the internet is reachable)
    python -m minicnn.recipes.fetch_weights vgg16 --from FILE.pth    # convert a file you already have

The official file is downloaded into the cache ($MINICNN_CACHE, or ~/.cache/minicnn), its SHA-256
is checked against the 8 hex digits in its name ("vgg16-397923af.pth": the digest starts with
397923af), then it is read WITHOUT torch (minicnn.io) and written as <cache>/<name>.npz, with
torchvision's key names, which `minicnn.models.load_imagenet_model(name)` loads.

Offline, the script says so and stops. A file you already have can be converted with --from, or
copied into the cache under its official name, where the next run finds it.
"""
import argparse
import re
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from minicnn.models import (imagenet_model_from_state, is_keras_vgg16, minicnn_to_torchvision, sha256_of_file,
                            weights_cache_dir)
from minicnn.io import WeightFileError, load_weights, save_weights

URLS = {
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")   # torch.hub's convention


class FetchError(Exception):
    """Something the user can fix; main() prints it as one line and exits with status 1."""


def check_hash_prefix(path):
    """Check the file's SHA-256 against the hex digits in its name; returns the prefix (None if no hash in the name)."""
    match = HASH_IN_NAME.search(Path(path).name)
    if match is None:
        return None
    prefix, digest = match.group(1), sha256_of_file(path)
    if not digest.startswith(prefix):
        raise FetchError(f"{path}: SHA-256 starts with {digest[:len(prefix)]}, not {prefix} as its name says: "
                         "the file is corrupt or incomplete; delete it and fetch it again")
    return prefix


def download(name, url, target, timeout=30):
    """Stream `url` into `target` (via a .part file, so an interrupted download leaves no target)."""
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", error)
        raise FetchError(
            f"cannot download {url} ({reason}): no internet here? If you have {target.name} already, "
            f"convert it with `python -m minicnn.recipes.fetch_weights {name} --from /path/to/{target.name}` "
            f"or copy it to {target} and run this again") from error
    partial.replace(target)


def convert(name, source, cache):
    """Read `source` without torch, check it is `name` in torchvision's layout, write <cache>/<name>.npz.

    Keras' VGG16 is refused: its weights expect caffe-mode input (BGR, mean-subtracted, 0-255), and
    under torchvision's names the cached file would be read as a torchvision model (RGB, mean/std)."""
    try:
        state = load_weights(source)
        if is_keras_vgg16(state):
            raise FetchError(f"{source} holds Keras' VGG16 weights, which expect caffe-mode input (BGR, "
                             "mean-subtracted); converted to torchvision's names they would be preprocessed "
                             "wrongly. Use the .h5 file directly instead: minicnn explain IMAGE --model vgg16 "
                             f"--weights {source}")
        net = imagenet_model_from_state(name, state, source=str(source))
    except (WeightFileError, ValueError) as error:
        raise FetchError(str(error)) from error
    target = cache / f"{name}.npz"
    save_weights(str(target), minicnn_to_torchvision(net.state_dict()))
    return target


def fetch(name, source=None, url=None, cache=None):
    """The whole job; returns the .npz path. source: a file the user has; else download url."""
    cache = Path(cache) if cache is not None else weights_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    if source is None:
        url = url or URLS[name]
        source = cache / url.rsplit("/", 1)[-1]
        if source.is_file():
            print(f"using {source} (already in the cache)")
        else:
            print(f"downloading {url} -> {source}")
            download(name, url, source)
    source = Path(source)
    if not source.is_file():
        raise FetchError(f"{source}: no such file")
    prefix = check_hash_prefix(source)
    print(f"{source}: SHA-256 starts with {prefix}, as its name says" if prefix else
          f"{source}: no hash in the file name, so its SHA-256 is not checked")
    target = convert(name, source, cache)
    print(f"wrote {target}; load it with minicnn.models.load_imagenet_model({name!r})")
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(URLS))
    parser.add_argument("--from", dest="source", metavar="FILE", help="convert this file instead of downloading")
    parser.add_argument("--url", help="download from this address instead of torchvision's")
    parser.add_argument("--cache", help="folder for the files (default $MINICNN_CACHE or ~/.cache/minicnn)")
    args = parser.parse_args(argv)
    try:
        fetch(args.name, args.source, args.url, args.cache)
    except FetchError as error:
        print(f"fetch_weights: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
