"""What a person sees in a real browser: the classic Jupyter Notebook (Colab's notebook 6.5 with
widgetsnbextension 3.6 and ipywidgets 7.7) in Debian's headless Chromium, driven by Selenium.

One small notebook, built here, calls the real helpers on tiny generated data (no training): the
live training curve updates in place, the classification and detection QC browsers show an image
that changes when another image is chosen, and a helpers error renders as one line. Selenium uses
the system's chromium and chromedriver and never downloads a browser; without them (or without
selenium or notebook 6) those tests skip with the reason, while the widget's own unit test (last)
runs everywhere. ``DL4CELLS_SCREENSHOTS=docs/screenshots`` keeps the screenshots of those outputs
in that folder (else in the test's temporary folder).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.metadata
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NOTEBOOK_NAME = "browser_check.ipynb"
TRAINING_EPOCHS = 3
SECONDS_BETWEEN_EPOCHS = 2.0


def skip_reason() -> str | None:
    """Why this machine cannot run the browser test (None when it can)."""
    if not (CHROMIUM and CHROMEDRIVER):
        return "no chromium/chromedriver on PATH (apt-get install chromium chromium-driver; .ci/run does it as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install installs the test extra)"
    try:
        version = importlib.metadata.version("notebook")
    except importlib.metadata.PackageNotFoundError:
        return "the classic Jupyter Notebook (notebook 6.x) is not installed"
    return None if version.startswith("6.") else f"notebook {version} is not the classic Notebook 6.x that Colab has"


in_browser = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))

SETUP = """
import pathlib, time, types
import numpy as np
from helpers import history, images, live_plot, runs, voc
from helpers.classification import browser as classification_browser, plots as classification_plots
from helpers import prediction_formats
from helpers.detection import quality as detection_quality
folder = pathlib.Path.cwd() / "data"
folder.mkdir(exist_ok=True)
pictures = {}
for index, colour in enumerate([(200, 40, 40), (40, 160, 40), (40, 40, 200)]):
    picture = np.zeros((64, 96, 3), np.uint8)
    picture[:] = colour
    picture[16 + 8 * index:40 + 8 * index, 20:60] = 255  # a white "cell", lower in each image
    pictures[f"image_{index}.png"] = folder / f"image_{index}.png"
    images.write_image(pictures[f"image_{index}.png"], picture)
print("ready")
"""

LIVE_PLOT = """
run = runs.RunFolder(root=folder / "run")
run.plots.mkdir(parents=True, exist_ok=True)
curve = live_plot.LivePlotCallback(run, [("Loss", ("train_loss", "validation_loss"))])
for epoch in range(1, {epochs} + 1):
    history.append_history(run.history_path, {{"epoch": epoch, "train_loss": 1 / epoch, "validation_loss": 1.2 / epoch}},
                           ["epoch", "train_loss", "validation_loss"])
    curve.on_epoch_end(epoch - 1)
    time.sleep({pause})
print("trained")
""".format(epochs=TRAINING_EPOCHS, pause=SECONDS_BETWEEN_EPOCHS)

CLASSIFICATION_BROWSER = """
classes = ["red", "green", "blue"]
items = {key: types.SimpleNamespace(key=key, path=path, label=label) for (key, path), label in zip(pictures.items(), classes)}
probabilities = {"image_0.png": np.array([0.8, 0.1, 0.1]), "image_1.png": np.array([0.6, 0.3, 0.1]),
                 "image_2.png": np.array([0.1, 0.1, 0.8])}
classification_result = types.SimpleNamespace(
    items=items, probabilities=probabilities, classes=classes, run=run,
    mistakes=[{"key": "image_1.png"}], predicted=lambda key: (classes[int(np.argmax(probabilities[key]))],
                                                             float(np.max(probabilities[key]))))
draw = lambda result, key, path: classification_plots.side_by_side([images.read_image(result.items[key].path)], [key], path)
classification_widget = classification_browser.browse(classification_result, draw=draw)
"""

DETECTION_BROWSER = """
boxes = {name: [voc.VocObject("cell", 20, 16 + 8 * index, 60, 40 + 8 * index)] for index, name in enumerate(pictures)}
predictions = [prediction_formats.Detection(name, "cell", 0.9, 22, 18 + 8 * index, 58, 42 + 8 * index)
               for index, name in enumerate(pictures)]
detection_result = detection_quality.QualityResult(
    run=run, config=types.SimpleNamespace(score_threshold=0.3), evaluation=None, source="three generated images",
    image_paths=pictures, ground_truth={name: types.SimpleNamespace(objects=objects) for name, objects in boxes.items()},
    predictions=predictions, output_dir=run.qc)
run.qc.mkdir(exist_ok=True)
detection_widget = detection_result.browse()
"""

ERROR = """
from helpers import workflow
workflow.require_folder("Training_images", "/content/gdrive/MyDrive/cells/images")  # as typed on Colab
"""


def build_notebook(folder: pathlib.Path) -> pathlib.Path:
    """The notebook the browser runs: setup, live curve, two QC browsers, one error (last: it stops the run)."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source.strip())
                      for source in (SETUP, LIVE_PLOT, CLASSIFICATION_BROWSER, DETECTION_BROWSER, ERROR)]
    path = folder / NOTEBOOK_NAME
    nbformat.write(notebook, path)
    return path


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory):
    """A classic Jupyter Notebook server on 127.0.0.1 with a token, serving a folder with the test notebook."""
    folder = tmp_path_factory.mktemp("browser")
    build_notebook(folder)
    port, token = free_port(), secrets.token_hex(16)
    repository = pathlib.Path(__file__).resolve().parents[1]
    environment = dict(os.environ, JUPYTER_CONFIG_DIR=str(folder / "config"), JUPYTER_RUNTIME_DIR=str(folder / "runtime"),
                       PYTHONPATH=str(repository), PYDEVD_DISABLE_FILE_VALIDATION="1", TF_CPP_MIN_LOG_LEVEL="2")
    server_log = open(folder / "server.log", "wb")  # noqa: SIM115 - open while the server runs
    server = subprocess.Popen([sys.executable, "-m", "notebook", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                               f"--NotebookApp.token={token}", f"--notebook-dir={folder}"]
                              + (["--allow-root"] if os.geteuid() == 0 else []),
                              env=environment, stdout=subprocess.DEVNULL, stderr=server_log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"jupyter notebook did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield {"url": f"{base}/notebooks/{NOTEBOOK_NAME}?token={token}", "folder": folder}
    server.terminate()
    server.wait(timeout=30)
    server_log.close()


@pytest.fixture(scope="module")
def browser(notebook_server):
    """Headless Chromium through Selenium with the system's chromedriver: given a driver path, Selenium
    skips Selenium Manager, so nothing is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1400", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float, what: str, poll: float = 0.2):
    """Poll ``condition()`` until it returns something true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def cell_done(driver, index: int) -> bool:
    """True once code cell ``index`` has finished (its prompt shows a number, not '*' or nothing)."""
    prompt = driver.execute_script(f"return Jupyter.notebook.get_cell({index}).input_prompt_number;")
    return isinstance(prompt, int)


def output_of(driver, index: int):
    """The output area element of cell ``index``."""
    return driver.find_elements("css selector", "#notebook-container .cell")[index].find_element(
        "css selector", ".output_wrapper")


def save_screenshot(element, folder: pathlib.Path, name: str) -> pathlib.Path:
    """A PNG of one element (what a person sees of that output)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(element.screenshot_as_png)
    return path


def wait_for_widget_manager(driver) -> None:
    """Wait until the page's widget manager has asked the kernel for its widgets (as a person waits for the page).

    widgetsnbextension 3.6 first tries the "jupyter.widget.control" comm, which ipywidgets 7.7 lacks, then
    asks the kernel for its open comms and, once answered, re-renders every widget output on the page,
    blanking the views already shown. A "Run all" sent before that question queues it behind every
    cell, so the widgets of the whole run vanish at its end. A kernel round trip sent after the
    fallback's warning is answered after the question (the kernel answers in order).
    """
    wait_for(lambda: any("jupyter.widget.control" in entry["message"] for entry in driver.get_log("browser")), 60,
             "the widget manager's first question to the kernel")
    driver.execute_script("window.kernelAnswered = false; Jupyter.notebook.kernel.execute('pass', "
                          "{shell: {reply: function () { window.kernelAnswered = true; }}});")
    wait_for(lambda: driver.execute_script("return window.kernelAnswered;"), 60, "the kernel's answer")
    time.sleep(1)  # the manager's re-render of the (still empty) page


@pytest.fixture(scope="module")
def page(notebook_server, browser):
    """The notebook opened and 'Run all' started; yields once the setup cell has run."""
    browser.get(notebook_server["url"])
    wait_for(lambda: browser.execute_script(
        "return !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected()"
        " && Jupyter.WidgetManager);"), 60, "the notebook page and its kernel")
    wait_for_widget_manager(browser)
    browser.execute_script("Jupyter.notebook.execute_all_cells();")
    wait_for(lambda: cell_done(browser, 0), 60, "the setup cell")
    folder = pathlib.Path(os.environ.get("DL4CELLS_SCREENSHOTS") or notebook_server["folder"] / "screenshots")
    return {"driver": browser, "screenshots": folder, "data": notebook_server["folder"] / "data"}


def image_sources(driver, index: int) -> list[str]:
    """The ``src`` of every picture in the output of cell ``index``, read in one step inside the browser.

    Read in JavaScript, not element by element: the live curve replaces its ``img`` after every
    epoch, so an element found a moment earlier can be gone when its ``src`` is asked for
    (Selenium's StaleElementReferenceException, seen once in CI).
    """
    return driver.execute_script(
        "const cell = document.querySelectorAll('#notebook-container .cell')[arguments[0]];"
        "return Array.from(cell.querySelectorAll('.output_wrapper img'), image => image.src);",
        index)


@pytest.mark.slow
@in_browser
def test_the_live_training_curve_is_one_picture_updated_after_every_epoch(page):
    driver = page["driver"]
    seen = []
    deadline = time.monotonic() + 60 + TRAINING_EPOCHS * SECONDS_BETWEEN_EPOCHS
    while not cell_done(driver, 1) and time.monotonic() < deadline:
        sources = image_sources(driver, 1)
        assert len(sources) <= 1  # updated in place, never one picture per epoch
        if sources and sources[0] not in seen:
            seen.append(sources[0])
        time.sleep(0.2)
    assert cell_done(driver, 1), "the live-curve cell did not finish"
    assert len(seen) >= 2, "the curve was not seen changing while the cell ran"
    final = image_sources(driver, 1)
    saved = (page["data"] / "run" / "plots" / "training_curves.png").read_bytes()
    assert final == ["data:image/png;base64," + base64.b64encode(saved).decode()]  # the last epoch's curves
    save_screenshot(output_of(driver, 1), page["screenshots"], "live_training_curve.png")


def shown_browser(page, index: int, what: str, screenshot: str):
    """The output of browser cell ``index`` once its ``ipywidgets.Image`` shows a picture (screenshot saved).

    Returns:
        (output element, image element, PNG bytes of the image as drawn, the image's src).
    """
    driver = page["driver"]
    wait_for(lambda: cell_done(driver, index), 60, what)
    output = output_of(driver, index)
    picture = wait_for(lambda: (output.find_elements("css selector", "img.widget-image") or [None])[0], 30,
                       f"the image widget of {what}")
    wait_for(lambda: picture.size["height"] > 50, 10, f"the first image of {what} to load")
    save_screenshot(output, page["screenshots"], screenshot)
    return output, picture, picture.screenshot_as_png, picture.get_attribute("src")


def wait_for_another_image(picture, source_before: str, drawn_before: bytes) -> None:
    """Wait until the image element shows a new picture, then check it is drawn differently."""
    wait_for(lambda: picture.get_attribute("src") != source_before, 20, "the newly chosen image")
    wait_for(lambda: picture.size["height"] > 50, 10, "the newly chosen image to load")
    assert picture.screenshot_as_png != drawn_before


@pytest.mark.slow
@in_browser
def test_the_classification_browser_shows_an_image_and_moving_the_slider_changes_it(page):
    from selenium.webdriver.common.keys import Keys

    output, picture, before, source_before = shown_browser(page, 2, "the classification browser",
                                                           "classification_qc_browser.png")
    caption = output.find_element("css selector", ".widget-html").text
    assert caption.startswith("image_0.png: true red, predicted red (0.80) – correct.")
    handle = output.find_element("css selector", ".ui-slider-handle")
    handle.click()
    handle.send_keys(Keys.ARROW_RIGHT)  # what a person does: the next image
    wait_for(lambda: output.find_element("css selector", ".widget-html").text.startswith("image_1.png"), 20,
             "the caption of the next image")
    assert "predicted red (0.60) – WRONG" in output.find_element("css selector", ".widget-html").text
    wait_for_another_image(picture, source_before, before)


@pytest.mark.slow
@in_browser
def test_the_detection_browser_shows_an_image_and_choosing_another_changes_it(page):
    from selenium.webdriver.support.ui import Select

    output, picture, before, source_before = shown_browser(page, 3, "the detection browser",
                                                           "detection_qc_browser.png")
    Select(output.find_element("css selector", "select")).select_by_visible_text("image_2.png")
    wait_for_another_image(picture, source_before, before)


@pytest.mark.slow
@in_browser
def test_no_widget_failed_to_render(page):
    driver = page["driver"]
    wait_for(lambda: cell_done(driver, 3), 60, "the browser cells")
    problems = [entry["message"] for entry in driver.get_log("browser")
                if entry["level"] == "SEVERE" and ("model" in entry["message"] or "TypeError" in entry["message"])]
    assert not problems


@pytest.mark.slow
@in_browser
def test_a_helpers_error_renders_as_one_line_naming_the_field_and_the_fix(page):
    from helpers import errors

    driver = page["driver"]
    wait_for(lambda: cell_done(driver, 4), 60, "the error cell")
    output = output_of(driver, 4)
    lines = [line for line in output.find_element("css selector", ".output_area").text.splitlines() if line.strip()]
    assert any("Training_images: folder" in line and "does not exist. Check the path in form 1.1" in line
               for line in lines), lines
    if hasattr(errors.HelpersError, "_render_traceback_"):
        assert len(lines) == 1, lines
    save_screenshot(output, page["screenshots"], "one_line_error.png")


def test_the_qc_browser_sets_image_bytes_without_an_output_widget_and_shows_callback_errors(tmp_path):
    """Without a browser: the widget tree holds no ``ipywidgets.Output``; a move swaps the picture and caption."""
    ipywidgets = pytest.importorskip("ipywidgets")
    import types

    import numpy as np

    from helpers import images, runs
    from helpers.classification import browser

    paths = {key: images.write_image(tmp_path / key, np.full((8, 8, 3), shade, np.uint8))
             for key, shade in (("a.png", 0), ("b.png", 255))}
    result = types.SimpleNamespace(items={key: types.SimpleNamespace(path=path) for key, path in paths.items()},
                                   mistakes=[{"key": "b.png"}], run=runs.RunFolder(root=tmp_path / "run"))
    (tmp_path / "run" / "qc").mkdir(parents=True)

    def copy_image(result, key, path):
        if key == "missing.png":
            raise FileNotFoundError(key)
        return pathlib.Path(shutil.copyfile(result.items[key].path, path))

    widget = browser.browse(result, describe_image=lambda result, key: f"<{key}>", draw=copy_image)
    (slider, only_mistakes), caption, picture = widget.children[0].children, widget.children[1], widget.children[2]

    def descendants(box):
        return [box] + [inner for child in getattr(box, "children", ()) for inner in descendants(child)]

    assert not [child for child in descendants(widget) if isinstance(child, ipywidgets.Output)]
    assert caption.value == "&lt;a.png&gt;" and picture.value == paths["a.png"].read_bytes()
    slider.value = 1
    assert caption.value == "&lt;b.png&gt;" and picture.value == paths["b.png"].read_bytes()
    result.mistakes = [{"key": "missing.png"}]  # a draw that fails in a callback: the caption says why
    only_mistakes.value = True
    assert caption.value.startswith("Could not draw this image") and picture.value == b""
