"""Screenshots of each view of the explorer, taken in a real (headless) Chromium.

    python -m minicnn.explore.screenshots [--out explore-screenshots] [--model shapes_vgg]

starts the explorer on 127.0.0.1 (a free port, in a thread), drives the page with selenium and writes
one PNG per view to the folder: 1_input.png, 2_predict.png, 3_layers.png, 4_unit.png, 5_numbers.png,
5_field.png (the clicked value's receptive field on the input), 6_camera.png (Chromium's fake camera).
The folder is not committed; docs/explore.md lists these files.

`serve_in_thread` and `chromium` are also what tests/explore/test_explore_browser.py uses.
Needs the `explore` extra, selenium, and Debian's chromium + chromium-driver.
"""
import argparse
import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# as root in a container: no sandbox, no GPU, /tmp instead of /dev/shm, nothing fetched from the internet
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")  # a test pattern, allowed


@contextlib.contextmanager
def serve_in_thread(app, host="127.0.0.1"):
    """Serve the ASGI app with uvicorn on a free port in a background thread; yields its URL, then stops it."""
    import uvicorn

    from .server import free_port

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=free_port(host), log_level="warning"))
    thread = threading.Thread(target=server.run, name="minicnn-explore-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the explorer's server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{server.config.port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def chromium(extra_flags=()):
    """A selenium WebDriver on Debian's chromium with a fresh profile; the browser log is kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="minicnn-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + tuple(extra_flags) + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_until(driver, script, timeout=60, poll=0.1):
    """Run the JavaScript expression until it is truthy; returns its value (TimeoutError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"the page never satisfied: {script}")


PATCHES_LOADED = ("document.querySelectorAll('#patches img.patch').length === 9 && "
                  "[...document.querySelectorAll('#patches img, #deconvs img')].every(i => i.complete && i.naturalWidth > 0)")


def pick_unit(driver, layer, channel, position=(0.5, 0.5)):
    """Click `layer` in the layer list, then channel `channel`'s map at the fractional (row, column) position."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#layer-list button[data-layer='{layer}']").click()
    wait_until(driver, f"document.getElementById('channel-grid').dataset.layer === '{layer}'")
    canvas = driver.find_element(By.CSS_SELECTOR, f"#channel-grid canvas[data-channel='{channel}']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    size = canvas.size
    ActionChains(driver).move_to_element_with_offset(
        canvas, int((position[1] - 0.5) * size["width"]), int((position[0] - 0.5) * size["height"])).click().perform()


def shoot(driver, section, path):
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, section)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    element.screenshot(str(path))


def take_screenshots(url, out, unit_layer="relu3_2", conv_layer="conv1_1"):
    """Drive the page at url through each view and save one PNG per view into `out`; returns the paths.
    unit_layer: the layer whose unit 5 is shown; conv_layer: the convolution whose numbers are shown."""
    from selenium.webdriver.common.by import By

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with chromium(FAKE_CAMERA) as driver:
        driver.get(url)
        wait_until(driver, "document.body.dataset.ready === 'true'")
        wait_until(driver, "document.querySelectorAll('#top5 tbody tr').length === 5")
        paths.append(out / "1_input.png")
        shoot(driver, "input-view", paths[-1])
        paths.append(out / "2_predict.png")
        shoot(driver, "predict-view", paths[-1])
        pick_unit(driver, unit_layer, 5)
        wait_until(driver, PATCHES_LOADED)
        wait_until(driver, "document.getElementById('dissection').textContent.startsWith('concept')", timeout=120)
        driver.find_element(By.ID, "ascent-start").click()
        wait_until(driver, "!document.getElementById('ascent-image').hidden && "
                           "document.getElementById('ascent-image').naturalWidth > 0", timeout=300)
        paths.append(out / "3_layers.png")
        shoot(driver, "layers-view", paths[-1])
        paths.append(out / "4_unit.png")
        shoot(driver, "unit-view", paths[-1])
        pick_unit(driver, conv_layer, 3, position=(0.4, 0.45))
        wait_until(driver, "document.querySelectorAll('#stamping table').length > 0")
        paths.append(out / "5_numbers.png")
        shoot(driver, "numbers-view", paths[-1])
        paths.append(out / "5_field.png")
        shoot(driver, "input-view", paths[-1])
        driver.find_element(By.ID, "camera-start").click()
        wait_until(driver, "Number(document.body.dataset.frames || 0) > 20", timeout=120)
        paths.append(out / "6_camera.png")
        driver.execute_script("window.scrollTo(0, 0);")
        driver.save_screenshot(str(paths[-1]))
        driver.find_element(By.ID, "camera-stop").click()
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minicnn.explore.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="explore-screenshots", help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--model", default="shapes_vgg", help="as for `minicnn explore --model`")
    args = parser.parse_args(argv)
    from ..tour.subject import search_layers
    from .app import create_app
    from .server import build_explorer

    explorer = build_explorer(args.model)
    layers = (search_layers(explorer.net)[-1], explorer.net.names[0])
    with serve_in_thread(create_app(explorer)) as url:
        for path in take_screenshots(url, args.out, *layers):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
