"""PDF reports: every block, non-Latin-1 text, figures with their aspect ratio, long tables."""

import re
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pypdf  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from helpers import report  # noqa: E402

SCIENCE_TEXT = ("Pixel size 0.65 µm; focal loss α = 0.25, γ = 2.0; boxes with IoU ≥ 0.5; images 512 × 512 → 640; "
                "epochs 1–50. Annotations by Zoë Müller and Erlantz Calvo Carrillo.")
LONG_PATH = "/content/gdrive/MyDrive/" + "a_very_long_folder_name_without_spaces_" * 8 + "image.png"
CONFIG_YAML = "# DetectionConfig\nbackbone: resnet50\nlearning_rate: 0.0001\nfocal_alpha: 0.25  # α\n"


def make_plot(path, width_inches=6.0, height_inches=3.0):
    figure, axis = plt.subplots(figsize=(width_inches, height_inches))
    axis.plot([0, 1, 2], [3, 1, 2])
    axis.set_title("validation mAP → epoch")
    figure.savefig(path, dpi=60)
    plt.close(figure)
    return path


def pdf_text(path) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


def drawn_image_sizes(path) -> list[tuple[float, float]]:
    """(width, height) in points of every image drawn, from the ``w 0 0 h x y cm /I.. Do`` operators."""
    sizes = []
    for page in pypdf.PdfReader(path).pages:
        content = page.get_contents().get_data()
        for match in re.finditer(rb"([\d.]+) 0 0 ([\d.]+) [\d.-]+ [\d.-]+ cm\s*/I\w*\s+Do", content):
            sizes.append((float(match.group(1)), float(match.group(2))))
    return sizes


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("full_report")
    figure = make_plot(tmp_path / "curves.png")
    document = report.Report("Training report: Zoë’s cells – α test", subtitle=f"Run folder: {LONG_PATH}")
    document.heading("Dataset – µm, α, γ, →, ≥, ×")
    document.paragraph(SCIENCE_TEXT)
    document.paragraph(LONG_PATH)
    document.key_value_table([("Images folder", LONG_PATH), ("Pixel size", "0.65 µm"), ("Focal α", 0.25),
                              ("Images", 120), ("Not recorded", None)])
    document.table(["class", "AP50", "note"],
                   [[f"row {index}", 0.5 + index / 1000, "≥ 0.5 → ok" if index % 2 else LONG_PATH]
                    for index in range(60)])
    document.figure(figure, width_mm=150, caption="Training curves: loss → mAP")
    document.preformatted(CONFIG_YAML + "long_line: " + "x" * 300)
    document.bullet_list(["[1] Lin T.-Y., Goyal P., Girshick R., He K., Dollár P. Focal Loss. ICCV 2017."])
    document.page_break()
    document.paragraph("The end.")
    path = document.save(tmp_path / "reports" / "nested" / "training_report.pdf")
    return path, figure


def test_every_block_renders_and_non_latin1_text_is_extractable(full_report):
    path, _ = full_report
    pages = pdf_text(path)
    text = "\n".join(pages)
    assert len(pages) > 1
    for fragment in ("µm", "α", "γ", "→", "≥", "×", "–", "Zoë Müller", "Calvo Carrillo", "Dollár",
                     "Training report: Zoë’s cells – α test", "learning_rate: 0.0001", "row 0", "row 59",
                     "0.65 µm", "The end.", "Focal α", "0.25"):
        assert fragment in text, fragment
    assert f"Page 1 of {len(pages)}" in pages[0] and f"Page {len(pages)} of {len(pages)}" in pages[-1]


def test_long_table_repeats_its_header_on_every_page(full_report):
    path, _ = full_report
    pages = pdf_text(path)
    table_pages = [page for page in pages if re.search(r"row \d+", page)]
    assert len(table_pages) >= 2
    assert all("class" in page and "AP50" in page for page in table_pages)


def test_long_words_wrap_inside_the_page(full_report):
    path, _ = full_report
    text = "".join("".join(pdf_text(path)).split())  # wrapped lines joined again
    assert "a_very_long_folder_name_without_spaces_" * 8 in text
    for page in pypdf.PdfReader(path).pages:
        for line in page.extract_text().splitlines():
            assert len(line) < 140, f"a line this long has run off the page: {line[:60]}..."


def test_figure_keeps_its_aspect_ratio(full_report):
    path, figure = full_report
    with Image.open(figure) as image:
        pixel_ratio = image.height / image.width
    (width, height), = drawn_image_sizes(path)
    assert height / width == pytest.approx(pixel_ratio, rel=0.01)
    assert width == pytest.approx(150 * 72 / 25.4, rel=0.01)  # 150 mm in points


def test_a_figure_taller_than_a_page_is_scaled_to_fit(tmp_path):
    tall = tmp_path / "tall.png"
    Image.fromarray(np.full((2000, 200, 3), 128, np.uint8)).save(tall)
    document = report.Report("Tall figure")
    document.figure(tall, width_mm=170)
    path = document.save(tmp_path / "tall.pdf")
    (width, height), = drawn_image_sizes(path)
    page_height = float(pypdf.PdfReader(path).pages[0].mediabox.height)
    assert height < page_height - 2 * report.TOP_MARGIN_MM * 72 / 25.4
    assert height / width == pytest.approx(10, rel=0.01)


def test_a_missing_figure_is_shown_not_fatal(tmp_path):
    document = report.Report("Missing figure")
    with pytest.warns(UserWarning, match="not found"):
        document.figure(tmp_path / "lost.png")
    text = "".join(pdf_text(document.save(tmp_path / "r.pdf")))
    assert "Figure missing" in text and "lost.png" in text


def test_save_is_atomic_and_creates_the_folder(full_report):
    path, _ = full_report
    assert path.name == "training_report.pdf" and path.read_bytes().startswith(b"%PDF")
    assert [child.name for child in path.parent.iterdir()] == ["training_report.pdf"], "no temporary file left"


def test_table_rejects_rows_wider_than_the_header(tmp_path):
    document = report.Report("Bad table")
    with pytest.raises(ValueError, match="row 1 has 3 values for 2 columns"):
        document.table(["a", "b"], [["1", "2"], ["1", "2", "3"]])
    with pytest.raises(ValueError, match="3 column widths for 2 columns"):
        document.table(["a", "b"], [["1", "2"]], column_widths_mm=[10, 20, 30])


def test_short_rows_and_custom_widths(tmp_path):
    document = report.Report("Widths")
    document.table(["class", "count", "comment"], [["RBC", 4155], ["WBC"]], column_widths_mm=[40, 20, 60])
    text = "".join(pdf_text(document.save(tmp_path / "w.pdf")))
    assert "RBC" in text and "4155" in text and "WBC" in text


def test_clean_text():
    assert report.clean_text(None) == ""
    assert report.clean_text(1 / 3) == "0.333333"
    assert report.clean_text(float("nan")) == "nan"
    assert report.clean_text("a\tb\r\nc\x00d") == "a    b\ncd"


def test_page_one_renders_to_an_image(full_report, tmp_path):
    """Rasterise page 1 with poppler (when installed) to check the PDF is drawable, not just parseable."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    path, _ = full_report
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
                   check=True, capture_output=True)
    rendered, = tmp_path.glob("page*.png")
    pixels = np.asarray(Image.open(rendered).convert("L"))
    assert pixels.shape[0] > pixels.shape[1]  # A4 portrait
    assert (pixels < 100).mean() > 0.01, "page 1 has visible text"


def test_table_columns_fit_their_longest_word(tmp_path):
    """Columns are widened (and the font shrunk if need be) so that no word is split across lines."""
    header = ["class", "AP50", "AP50-95", "precision", "recall", "F1", "TP", "FP", "FN"]
    rows = [[name, "1.000", "0.819", "1.000", "1.000", "1.000", "13", "0", "0"]
            for name in ("synthetic_large_cell", "synthetic_small_cell", "RBC")]
    document = report.Report("Widths")
    document.table(header, rows)
    document.table(["class", "annotated", "predicted", "MAE", "MRE (images)", "Pearson r", "bias",
                    "95 % limits of agreement"], [["all classes (totals)", 34, 34, "0.000", "0.000 (6)", "1.000",
                                                   "0.000", "-1.234 to 1.234"]], column_widths_mm=(25, 23, 21, 14, 20, 20, 15, 32))
    words = [word for page in pdf_text(document.save(tmp_path / "w.pdf")) for line in page.splitlines()
             for word in line.split()]
    for word in ("synthetic_large_cell", "synthetic_small_cell", "precision", "annotated", "predicted", "agreement",
                 "(totals)", "Pearson"):
        assert word in words, f"{word} was split across lines"
