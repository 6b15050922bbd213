"""The explorer in a real browser: Debian's chromium driven by selenium, the real server (uvicorn on
127.0.0.1, a free port, in a thread). Skips cleanly without chromium, chromedriver or selenium.

What a learner does: load the page, pick a layer and a unit and see 9 patches, upload a PNG and see
the top-5, start the (fake) camera and see frames arrive with a positive rate, two tabs at once, a
refused or missing camera, a file that is not an image -- and no console errors along the way.
No assertion here is about speed: the rate is read, never compared with a bar (tools/bench for that).
"""
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")
from minicnn.explore.screenshots import (  # noqa: E402
    CHROMEDRIVER, CHROMIUM, FAKE_CAMERA, PATCHES_LOADED, chromium, pick_unit, serve_in_thread, wait_until)

if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)

from PIL import Image  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from minicnn import data, models, user_input  # noqa: E402
from minicnn.explore.app import create_app  # noqa: E402
from minicnn.explore.server import build_explorer  # noqa: E402
from minicnn.imagenet import topk  # noqa: E402


@pytest.fixture(scope="module")
def url():
    explorer = build_explorer("shapes_vgg", dataset_size=60)
    with serve_in_thread(create_app(explorer)) as address:
        yield address
    explorer.close()


@pytest.fixture(scope="module")
def browser(url):
    with chromium(FAKE_CAMERA) as driver:
        driver.get(url)
        wait_until(driver, "document.body.dataset.ready === 'true'")
        yield driver


def console_errors(driver, allowed=()):
    """The browser log's errors since the last call, minus those containing an allowed text."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not any(text in entry["message"] for text in allowed)]


def top5_shown(driver):
    return [row.find_element(By.TAG_NAME, "td").text for row in driver.find_elements(By.CSS_SELECTOR, "#top5 tbody tr")]


def messages(driver):
    return driver.find_element(By.ID, "messages").text


def test_the_page_loads_with_the_top5_the_layers_and_no_console_errors(browser):
    wait_until(browser, "document.querySelectorAll('#top5 tbody tr').length === 5")
    layers = browser.find_elements(By.CSS_SELECTOR, "#layer-list button")
    assert [b.get_attribute("data-layer") for b in layers][:3] == ["conv1_1", "relu1_1", "conv1_2"]
    assert "8\u00d764\u00d764" in layers[0].text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#channel-grid canvas")) == 8
    assert console_errors(browser) == []


def test_picking_a_layer_and_a_unit_shows_9_patches_and_their_deconvnet(browser):
    pick_unit(browser, "relu2_2", 4)
    wait_until(browser, PATCHES_LOADED)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#patches img")) == 9
    assert len(browser.find_elements(By.CSS_SELECTOR, "#deconvs img")) == 9
    wait_until(browser, "document.getElementById('dissection').textContent.startsWith('concept')", timeout=120)
    assert "IoU" in browser.find_element(By.ID, "dissection").text
    assert console_errors(browser) == []


def test_clicking_a_conv_position_writes_out_its_dot_product(browser):
    pick_unit(browser, "conv1_1", 2, position=(0.5, 0.25))
    wait_until(browser, "document.querySelectorAll('#stamping table').length > 0")
    text = browser.find_element(By.ID, "dot-product").text
    assert "w \u00b7 x + b" in text and "the network computed" in text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#dot-product table")) == 3   # one per input channel
    assert console_errors(browser) == []


def test_uploading_a_png_shows_its_top5(browser, tmp_path):
    picture = data.make_shapes(1, seed=31).images[0]
    path = tmp_path / "mine.png"
    Image.fromarray(np.round(picture.transpose(1, 2, 0) * 255).astype(np.uint8)).save(path)
    x = user_input.shapes_input(user_input.read_image(path)[0], path)[0]
    expected = [name for name, _ in topk(models.load_pretrained("shapes_vgg").forward(x)[0], 5, data.CLASS_NAMES)]
    browser.find_element(By.ID, "upload").send_keys(str(path))
    wait_until(browser, "document.getElementById('input-caption').textContent.startsWith('mine.png')")
    wait_until(browser, f"document.querySelector('#top5 tbody td').textContent === {expected[0]!r}")
    assert top5_shown(browser) == expected
    assert console_errors(browser) == []


def test_a_file_that_is_not_an_image_gives_a_message_and_the_page_keeps_working(browser, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image at all")
    browser.find_element(By.ID, "upload").send_keys(str(path))
    wait_until(browser, "document.getElementById('messages').textContent.includes('is not an image')")
    assert console_errors(browser, allowed=("status of 415",)) == []   # the refused upload's own line only
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (9 * 2**20))   # above the 8 MiB limit: the page says so before sending it
    browser.find_element(By.ID, "upload").send_keys(str(huge))
    wait_until(browser, "document.getElementById('messages').textContent.includes('huge.png is 9437184 bytes')")
    browser.find_elements(By.CSS_SELECTOR, "#dataset-strip img")[7].click()
    wait_until(browser, "document.querySelector('#dataset-strip img.current')?.dataset.id === 'dataset-7'")
    wait_until(browser, "document.querySelectorAll('#top5 tbody tr').length === 5")
    assert console_errors(browser) == []


def test_the_fake_camera_streams_frames_with_cam_and_the_page_shows_a_positive_rate(browser, url):
    browser.find_element(By.ID, "camera-start").click()
    wait_until(browser, "Number(document.body.dataset.frames || 0) >= 5", timeout=120)
    first = int(browser.execute_script("return Number(document.body.dataset.frames);"))
    time.sleep(3)
    later = int(browser.execute_script("return Number(document.body.dataset.frames);"))
    assert later > first, "no camera frames arrived in 3 s"
    rate_text = browser.find_element(By.ID, "rate").text
    assert rate_text.startswith("camera: ") and float(rate_text.split()[1]) > 0
    assert "(live)" in browser.find_element(By.ID, "map-caption").text
    assert "CAM" in browser.find_element(By.ID, "map-caption").text
    # a second tab works while the first one streams
    first_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(url)
        wait_until(browser, "document.body.dataset.ready === 'true'")
        pick_unit(browser, "relu3_1", 1)
        wait_until(browser, PATCHES_LOADED)
        assert console_errors(browser) == []
    finally:
        browser.close()
        browser.switch_to.window(first_tab)
    still = int(browser.execute_script("return Number(document.body.dataset.frames);"))
    wait_until(browser, f"Number(document.body.dataset.frames) > {still}", timeout=30)
    browser.find_element(By.ID, "camera-stop").click()
    assert console_errors(browser) == []


@pytest.mark.parametrize("flags, expected", [
    (("--use-fake-device-for-media-stream", "--deny-permission-prompts"), "refused"),
    (("--use-fake-ui-for-media-stream",), "no camera"),
])
def test_a_refused_or_missing_camera_gives_a_message_not_a_blank_page(url, flags, expected):
    with chromium(flags) as driver:
        driver.get(url)
        wait_until(driver, "document.body.dataset.ready === 'true'")
        driver.find_element(By.ID, "camera-start").click()
        wait_until(driver, "document.getElementById('messages').textContent.includes('camera')", timeout=30)
        assert expected in messages(driver)
        assert len(top5_shown(driver)) == 5   # the page still shows the dataset image's answer
        assert console_errors(driver) == []
