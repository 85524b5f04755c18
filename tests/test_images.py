"""helpers.images: listing, reading every supported format as uint8 RGB, header-only sizes, writing."""

import cv2
import numpy as np
import pytest
import tifffile

from helpers import errors, images


def _rgb(height=6, width=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _write_cv2(path, array):
    """Write with OpenCV (BGR order on disk), as other tools would."""
    ok, encoded = cv2.imencode(path.suffix, array)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def test_list_images_filters_sorts_and_ignores_hidden(tmp_path):
    for name in ["b.JPG", "a.png", "c.TIFF", "d.tif", "e.bmp", "f.jpeg", "notes.txt", "g.xml", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    assert [path.name for path in images.list_images(tmp_path)] == ["a.png", "b.JPG", "c.TIFF", "d.tif", "e.bmp", "f.jpeg"]
    assert set(images.IMAGE_EXTENSIONS) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def test_list_images_missing_folder_names_it(tmp_path):
    with pytest.raises(errors.DatasetError, match="nowhere"):
        images.list_images(tmp_path / "nowhere")


@pytest.mark.parametrize("extension", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_write_read_round_trip(tmp_path, extension):
    rgb = _rgb()
    path = images.write_image(tmp_path / f"sub folder/é{extension}", rgb)
    result = images.read_image(path)
    assert result.dtype == np.uint8 and result.shape == (6, 8, 3)
    np.testing.assert_array_equal(result, rgb)
    assert images.image_size(path) == (8, 6)


def test_jpeg_is_read_as_rgb_not_bgr(tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 250
    result = images.read_image(images.write_image(tmp_path / "red.JPG", red))
    assert result[..., 0].min() > 200 and result[..., 2].max() < 40
    assert images.image_size(tmp_path / "red.JPG") == (16, 16)


def test_opencv_written_png_channel_order(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    result = images.read_image(_write_cv2(tmp_path / "blue.png", bgr))
    assert (result[..., 2] == 200).all() and (result[..., 0] == 0).all()


def test_grayscale_8bit_repeated_to_three_channels(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    for path in (_write_cv2(tmp_path / "g.png", gray), tmp_path / "g.tif"):
        if path.suffix == ".tif":
            tifffile.imwrite(path, gray)
        result = images.read_image(path)
        assert result.shape == (6, 8, 3)
        for channel in range(3):
            np.testing.assert_array_equal(result[..., channel], gray)


def test_rgba_alpha_dropped_png_and_tiff(tmp_path):
    rgb = _rgb()
    alpha = np.full((6, 8, 1), 7, np.uint8)
    _write_cv2(tmp_path / "a.png", cv2.cvtColor(np.concatenate([rgb, alpha], axis=2), cv2.COLOR_RGBA2BGRA))
    tifffile.imwrite(tmp_path / "a.tif", np.concatenate([rgb, alpha], axis=2), photometric="rgb", extrasamples=["unassalpha"])
    for name in ("a.png", "a.tif"):
        np.testing.assert_array_equal(images.read_image(tmp_path / name), rgb)


def test_planar_rgb_tiff_and_first_page_only(tmp_path):
    rgb = _rgb()
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(images.read_image(tmp_path / "planar.tif"), rgb)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        writer.write(rgb, photometric="rgb")
        writer.write(_rgb(seed=1)[:3], photometric="rgb")
    np.testing.assert_array_equal(images.read_image(tmp_path / "pages.tif"), rgb)
    assert images.image_size(tmp_path / "pages.tif") == (8, 6)


def test_16bit_is_stretched_per_image_by_percentiles(tmp_path):
    # 1000..1999 (10 times each) plus two outliers: the 0.1/99.9 percentile stretch ignores them.
    values = np.concatenate([[0], np.repeat(np.arange(1000, 2000), 10), [65535]]).astype(np.uint16)
    gray = values.reshape(2, 5001)
    _write_cv2(tmp_path / "g16.png", gray)
    tifffile.imwrite(tmp_path / "g16.tif", gray)
    low, high = np.percentile(gray.astype(float), images.STRETCH_PERCENTILES)
    expected = np.clip(np.rint((gray.astype(float) - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)
    for name in ("g16.png", "g16.tif"):
        result = images.read_image(tmp_path / name)
        assert result.dtype == np.uint8
        np.testing.assert_array_equal(result[..., 1], expected)
        assert result.min() == 0 and result.max() == 255
    # The outliers do not squash the rest: 1000..1999 spans (nearly) the full range.
    assert expected[gray == 1000].max() <= 1 and expected[gray == 1999].min() >= 254


def test_16bit_rgb_tiff_keeps_colour_balance_and_constant_image_is_zero(tmp_path):
    rgb16 = np.zeros((10, 10, 3), np.uint16)
    rgb16[..., 0] = np.linspace(0, 60000, 100).reshape(10, 10)
    rgb16[..., 1] = 30000
    tifffile.imwrite(tmp_path / "c.tif", rgb16, photometric="rgb")
    result = images.read_image(tmp_path / "c.tif")
    assert result[..., 0].max() == 255 and result[..., 2].max() == 0  # one stretch for all channels
    assert 120 <= result[0, 0, 1] <= 135  # 30000 of 0..60000 -> about the middle
    tifffile.imwrite(tmp_path / "flat.tif", np.full((5, 5), 400, np.uint16))
    assert not images.read_image(tmp_path / "flat.tif").any()


def test_image_size_reads_only_the_header(tmp_path):
    path = images.write_image(tmp_path / "big.png", _rgb(300, 200))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(path.read_bytes()[:200])  # header intact, pixel data cut off
    assert images.image_size(truncated) == (200, 300)
    with pytest.raises(errors.DatasetError, match="truncated.png"):
        images.read_image(truncated)


@pytest.mark.parametrize("name, content", [("bad.png", b"not an image at all"), ("empty.jpg", b""),
                                           ("bad.tif", b"II*\x00garbage"), ("bad.bmp", b"BM\x00\x01")])
def test_corrupt_files_raise_dataset_error_naming_them(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(errors.DatasetError, match=name.replace(".", r"\.")):
        images.read_image(tmp_path / name)
    with pytest.raises(errors.DatasetError, match=name.replace(".", r"\.")):
        images.image_size(tmp_path / name)


def test_missing_file_raises_dataset_error(tmp_path):
    with pytest.raises(errors.DatasetError, match="missing.png"):
        images.read_image(tmp_path / "missing.png")
    with pytest.raises(errors.DatasetError, match="missing.png"):
        images.image_size(tmp_path / "missing.png")


def test_write_image_rejects_wrong_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        images.write_image(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        images.write_image(tmp_path / "f.png", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="extension"):
        images.write_image(tmp_path / "f.gif", np.zeros((4, 4, 3), np.uint8))
