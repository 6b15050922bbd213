"""How many camera frames per second the explorer serves: a benchmark, never a test.

    python -m minicnn.explore.camera_bench [--model shapes_vgg] [--method cam] [--layer conv1_1] [--seconds 10]

One frame is what the page's camera loop asks for: the top-5, one map (CAM by default) for the top-1
class, and every channel of one layer. Three measurements, each over --seconds after a warm-up:

    compute    Explorer.frame in this process on a 64 x 64 frame: the network's work alone
    http       POST /api/frame to the real server (uvicorn, 127.0.0.1) from one client, one frame
               at a time as the page sends them: adds PNG decoding, JSON and base64 encoding, HTTP
    browser    headless Chromium with its fake camera: the page's own loop (grab, PNG, POST, draw);
               the frames counted over the interval, and the rate the page shows

and, with --units, the unit view: the seconds from asking for a unit to having its 9 patch and 9
DeconvNet pictures (channels 1-7 of three layers, each layer indexed first by a request for channel 0).

Prints one line per measurement. On a shared machine the numbers move with the other work running.
"""
import argparse
import io
import time

import numpy as np


def frame_png(explorer):
    """A held-out shapes image as PNG bytes, at the model's input size (what the page posts)."""
    from PIL import Image

    from ..data import make_shapes

    side = explorer.input_size
    picture = make_shapes(1, seed=4242, size=side).images[0]
    buffer = io.BytesIO()
    Image.fromarray(np.round(picture.transpose(1, 2, 0) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def rate(step, seconds, warmup=1.0):
    """Frames per second of step() run back to back for `seconds` (after `warmup` seconds of it)."""
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        step()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    return count / (time.perf_counter() - start)


def compute_rate(explorer, png, method, layer, seconds):
    image = explorer.add_image(png, "frame.png", keep=False)
    return rate(lambda: explorer.frame(image, None, method, layer), seconds)


def http_rate(url, png, method, layer, seconds):
    import httpx

    fields = {"method": method, "layer": layer, "encoding": "base64"}
    with httpx.Client(base_url=url, timeout=30) as client:
        def step():
            answer = client.post("/api/frame", files={"image": ("frame.png", png, "image/png")}, data=fields)
            answer.raise_for_status()
        return rate(step, seconds)


def browser_rate(url, method, layer, seconds):
    """(frames per second counted, the rate the page shows at the end) in headless Chromium."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from .screenshots import FAKE_CAMERA, chromium, pick_unit, wait_until

    with chromium(FAKE_CAMERA) as driver:
        driver.get(url)
        wait_until(driver, "document.body.dataset.ready === 'true'")
        Select(driver.find_element(By.ID, "method")).select_by_value(method)
        pick_unit(driver, layer, 0)
        driver.find_element(By.ID, "camera-start").click()
        wait_until(driver, "Number(document.body.dataset.frames || 0) >= 10", timeout=120)
        time.sleep(1.0)
        frames = "return Number(document.body.dataset.frames);"
        first, start = driver.execute_script(frames), time.perf_counter()
        time.sleep(seconds)
        counted = (driver.execute_script(frames) - first) / (time.perf_counter() - start)
        shown = float(driver.execute_script("return document.body.dataset.rate;"))
        driver.find_element(By.ID, "camera-stop").click()
    return counted, shown


def unit_seconds(url, layers, channels=range(1, 8)):
    """{layer: (seconds of the first request (the search), [seconds per unit and its 18 pictures])}."""
    import httpx

    timings = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        for layer in layers:
            start = time.perf_counter()
            client.get(f"/api/units/{layer}/0").raise_for_status()
            first, each = time.perf_counter() - start, []
            for channel in channels:
                start = time.perf_counter()
                for patch in client.get(f"/api/units/{layer}/{channel}").json()["patches"]:
                    client.get(patch["patch_png"]).raise_for_status()
                    client.get(patch["deconv_png"]).raise_for_status()
                each.append(time.perf_counter() - start)
            timings[layer] = (first, each)
    return timings


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.explore.camera_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shapes_vgg", help="as for `minicnn explore --model` (default: %(default)s)")
    parser.add_argument("--method", default="cam", help="the live map (default: %(default)s)")
    parser.add_argument("--layer", default="conv1_1", help="the layer whose channels are sent (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement (default: %(default)s)")
    parser.add_argument("--skip-browser", action="store_true", help="only the compute and http measurements")
    parser.add_argument("--units", action="store_true", help="also time the unit view (500 shapes images)")
    args = parser.parse_args(argv)

    from .app import create_app
    from .screenshots import serve_in_thread
    from .server import build_explorer

    explorer = build_explorer(args.model, dataset_size=500 if args.units else 20)
    png = frame_png(explorer)
    what = f"{args.model}, top-5 + {args.method} + {args.layer} {explorer.layer_shapes[args.layer]}"
    print(f"compute  {compute_rate(explorer, png, args.method, args.layer, args.seconds):7.1f} frames/s ({what})",
          flush=True)
    with serve_in_thread(create_app(explorer)) as url:
        print(f"http     {http_rate(url, png, args.method, args.layer, args.seconds):7.1f} frames/s (POST /api/frame, "
              "one client)", flush=True)
        if not args.skip_browser:
            counted, shown = browser_rate(url, args.method, args.layer, args.seconds)
            print(f"browser  {counted:7.1f} frames/s counted, the page shows {shown:.1f} frames/s "
                  "(headless Chromium, fake camera)", flush=True)
        if args.units:
            from ..tour.subject import search_layers

            for layer, (first, each) in unit_seconds(url, search_layers(explorer.net)).items():
                print(f"unit     {layer}: first request (the search) {first:.2f} s, then a unit with its 18 "
                      f"pictures: median {np.median(each):.2f} s, max {max(each):.2f} s", flush=True)
    explorer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
