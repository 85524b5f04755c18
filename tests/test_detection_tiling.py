"""Pixel scale and windows (``helpers.detection.tiling``): the choice of scale, the window grid, reading
windows region by region, the merge across seams, training windows with ignore regions, and records."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import errors, images, voc
from helpers.detection import tiling


def sizes(*pairs):
    return np.asarray(pairs, dtype=float).reshape(-1, 2)


# ----- the scale ---------------------------------------------------------------------------

def test_whole_image_when_the_smallest_class_is_large_enough():
    # BCCD-like: 640x480 images, platelets about 40 px; at 384 px the whole image (scale 0.6) gives 24 px.
    chosen = tiling.choose_scale({"Platelets": sizes((40, 40), (38, 41)), "RBC": sizes((100, 100))},
                                 sizes((640, 480), (640, 480)), 384)
    assert chosen.scale == pytest.approx(0.6)
    assert chosen.windows_for(640, 480) == 1
    assert "fits one window" in chosen.reason and chosen.chosen_by == "auto"


def test_tiles_when_shrinking_the_whole_image_would_lose_the_smallest_class():
    # The same cells in 1920x1440 fields: shrinking a field into 384 px would make platelets 8 px.
    chosen = tiling.choose_scale({"Platelets": sizes((40, 40)), "RBC": sizes((100, 100))}, sizes((1920, 1440)), 384)
    assert 40 * chosen.scale >= tiling.MIN_OBJECT_PIXELS
    assert chosen.scale < 0.62
    assert chosen.windows_for(1920, 1440) > 1
    assert chosen.overlap >= 100 * chosen.scale  # the largest object fits the overlap
    assert "Platelets" in chosen.reason and "8 px" in chosen.reason


def test_a_typed_scale_wins_and_the_advice_names_the_class_and_the_fix():
    box_sizes = {"Platelets": sizes((40, 40)), "RBC": sizes((100, 100))}
    chosen = tiling.choose_scale(box_sizes, sizes((640, 480)), 256, requested=0.4)
    assert chosen.scale == 0.4 and chosen.chosen_by == "user"
    advice = tiling.size_advice(tiling.object_sizes(box_sizes, chosen.scale), chosen)
    assert len(advice) == 1
    assert advice[0].startswith("Platelets are 16 px wide at pixel scale 0.4")
    assert "Set pixel_scale to 0.566 or more" in advice[0]
    auto = tiling.choose_scale(box_sizes, sizes((640, 480)), 256)
    assert tiling.size_advice(tiling.object_sizes(box_sizes, auto.scale), auto) == []


def test_parse_scale_reads_auto_numbers_and_decimal_commas():
    assert tiling.parse_scale("auto") is None and tiling.parse_scale(" AUTO ") is None
    assert tiling.parse_scale("0,5") == 0.5 and tiling.parse_scale(2) == 2.0
    with pytest.raises(ValueError):
        tiling.parse_scale("big")


def test_config_names_a_bad_pixel_scale():
    from helpers import config
    from helpers.detection.config import DetectionConfig

    with pytest.raises(errors.ConfigError, match=r"pixel_scale: 'big' is neither 'auto' nor a number"):
        config.config_from_form(DetectionConfig, "quick", pixel_scale="big")
    with pytest.raises(errors.ConfigError, match=r"pixel_scale: 20 is outside"):
        config.config_from_form(DetectionConfig, "quick", pixel_scale="20")
    assert config.config_from_form(DetectionConfig, "quick").pixel_scale == "auto"


# ----- windows -----------------------------------------------------------------------------

@pytest.mark.parametrize("length, window, overlap", [(1000, 384, 64), (385, 384, 100), (384, 384, 64), (5000, 256, 128)])
def test_windows_cover_the_axis_with_at_least_the_overlap(length, window, overlap):
    starts = tiling.window_starts(length, window, overlap)
    assert starts[0] == 0 and starts[-1] + window == length
    for first, second in zip(starts, starts[1:]):
        assert first + window - second >= overlap


def test_a_small_image_is_one_window_of_its_own_size():
    assert tiling.window_grid(100, 200, 384, 64) == [tiling.Window(0, 0, 200, 100)]


@pytest.mark.parametrize("scale", [0.37, 1.0, 1.6])
def test_windows_read_region_by_region_equal_the_whole_resized_image(scale):
    import cv2

    rng = np.random.default_rng(0)
    # Smooth content: interpolation at region borders may differ by a little, not by structure.
    pixels = cv2.GaussianBlur(rng.integers(0, 255, (300, 420, 3)).astype(np.uint8), (0, 0), 3)
    scaled = tiling.ScaledImage(tiling.ArraySource(pixels), scale)
    whole = tiling.resize(pixels, scaled.width, scaled.height)
    for area in scaled.windows(128, 32):
        window = scaled.pixels(area)
        assert window.shape == (area.height, area.width, 3)
        reference = whole[area.y:area.y + area.height, area.x:area.x + area.width].astype(int)
        assert np.median(np.abs(window.astype(int) - reference)) <= 2


def test_boxes_go_to_window_pixels_and_back():
    scaled = tiling.ScaledImage(tiling.ArraySource(np.zeros((480, 640, 3), np.uint8)), 0.6)
    area = tiling.Window(100, 50, 128, 128)
    boxes = np.array([[200.0, 120.0, 260.0, 170.0]])
    assert np.allclose(scaled.to_image_pixels(scaled.to_input_pixels(boxes, area), area), boxes)


# ----- the merge across seams ------------------------------------------------------------

def test_an_object_cut_by_a_seam_is_reported_once():
    """Image 200 px wide, windows [0, 128) and [72, 200) (cores split at x = 100): an object at x
    110-150 is cut by the first window's right edge and whole in the second; an object at x 80-96 is
    whole in both."""
    scaled = tiling.ScaledImage(tiling.ArraySource(np.zeros((128, 200, 3), np.uint8)), 1.0)
    left, right = scaled.windows(128, 56)
    assert (left.x, right.x) == (0, 72)
    in_left = np.array([[110.0, 40.0, 128.0, 80.0],   # the cut piece, at the left window's edge
                        [80.0, 10.0, 96.0, 30.0]])     # whole
    in_right = np.array([[38.0, 40.0, 78.0, 80.0],    # the same objects, seen from the right window
                         [8.0, 10.0, 24.0, 30.0]])
    boxes = np.concatenate([scaled.to_image_pixels(in_left, left), scaled.to_image_pixels(in_right, right)])
    owned = np.concatenate([tiling.owned_by_window(in_left, left, scaled.width, scaled.height, 128, 56),
                            tiling.owned_by_window(in_right, right, scaled.width, scaled.height, 128, 56)])
    assert owned.tolist() == [False, True, True, False]
    kept = tiling.merge_detections(boxes, np.array([0.9, 0.8, 0.7, 0.75]), np.array([1, 1, 1, 1]), owned, 0.5)
    assert sorted(boxes[kept].round().tolist()) == [[80, 10, 96, 30], [110, 40, 150, 80]]


def test_window_cores_tile_the_image_without_gaps_or_overlaps():
    width, height, window, overlap = 530, 300, 128, 40
    areas = tiling.window_grid(height, width, window, overlap)
    centres = np.array([[x + 0.5 - 1, y + 0.5 - 1, x + 0.5 + 1, y + 0.5 + 1] for x in range(0, width, 7)
                        for y in range(0, height, 7)], dtype=float)
    owners = np.zeros(len(centres), int)
    for area in areas:
        local = centres - [area.x, area.y, area.x, area.y]
        inside = (local[:, 0] >= -1) & (local[:, 2] <= area.width + 1) & (local[:, 1] >= -1) & (local[:, 3] <= area.height + 1)
        owners += tiling.owned_by_window(local, area, width, height, window, overlap) & inside
    assert owners.tolist() == [1] * len(centres)


def test_merging_is_class_by_class_and_joins_boxes_owned_by_two_cores():
    boxes = np.array([[0, 0, 50, 50], [2, 2, 50, 50], [1, 1, 50, 50], [100, 0, 128, 40]], dtype=float)
    classes = np.array([1, 2, 1, 1])
    kept = tiling.merge_detections(boxes, np.array([0.9, 0.8, 0.7, 0.6]), classes, np.ones(4, bool), 0.5)
    assert sorted(kept.tolist()) == [0, 1, 3]


# ----- training windows ------------------------------------------------------------------

def test_training_windows_keep_half_visible_boxes_and_ignore_the_rest():
    scaled = tiling.ScaledImage(tiling.ArraySource(np.zeros((100, 300, 3), np.uint8)), 1.0)
    boxes = np.array([[10, 10, 40, 40],      # whole in the first window only
                      [90, 10, 130, 40],     # 38 of 40 px inside window 1 (x < 128): kept there
                      [120, 50, 160, 90]])   # 8 of 40 px inside window 1: ignored there
    windows = tiling.training_windows(scaled, boxes, ["a", "b", "c"], 128, 48)  # overlap >= the 40-px objects
    first = windows[0]
    assert first.area.x == 0
    assert first.labels == ["a", "b"]
    assert first.ignore_boxes.tolist() == [[120.0, 50.0, 128.0, 90.0]]
    # Every object lies whole in some window.
    for box in boxes:
        assert any((scaled.to_input_pixels(box[None], window.area)[0] >= 0).all()
                   and scaled.to_input_pixels(box[None], window.area)[0][2] <= window.area.width for window in windows)


def test_empty_windows_are_kept_at_the_stated_ratio():
    scaled = tiling.ScaledImage(tiling.ArraySource(np.zeros((128, 128 * 12, 3), np.uint8)), 1.0)
    boxes = np.array([[10 + 128 * index, 10, 40 + 128 * index, 40] for index in range(4)], dtype=float)
    windows = tiling.training_windows(scaled, boxes, ["a"] * 4, 128, 0, rng=np.random.default_rng(0))
    with_objects = [window for window in windows if window.labels]
    assert len(with_objects) == 4
    assert len(windows) - len(with_objects) == int(tiling.EMPTY_WINDOWS_PER_WINDOW_WITH_OBJECTS * 4)


# ----- image sources ---------------------------------------------------------------------

def test_a_large_tiff_is_read_region_by_region(tmp_path):
    import tifffile

    pixels = np.random.default_rng(1).integers(0, 255, (600, 700, 3)).astype(np.uint8)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, pixels, bigtiff=True)
    source = tiling.open_image(path, min_pixels_for_regions=1000)
    assert isinstance(source, tiling.TiffSource)
    assert (source.height, source.width) == (600, 700)
    assert np.array_equal(source.read(100, 250, 300, 520), pixels[100:250, 300:520])
    small = tiling.open_image(path)  # below the default size: decoded whole, as every other image
    assert isinstance(small, tiling.ArraySource) and np.array_equal(small.pixels, pixels)


def test_a_16_bit_tiff_is_decoded_whole_with_the_usual_stretch(tmp_path):
    import tifffile

    from helpers import images

    pixels = np.random.default_rng(2).integers(0, 4000, (300, 300)).astype(np.uint16)
    path = tmp_path / "sixteen.tif"
    tifffile.imwrite(path, pixels)
    source = tiling.open_image(path, min_pixels_for_regions=1000)
    assert isinstance(source, tiling.ArraySource)
    assert np.array_equal(source.pixels, images.read_image(path))


def test_measure_reads_boxes_and_image_sizes(tmp_path):
    from helpers.detection import dataset as detection_dataset
    from helpers.detection import demo_data

    data = demo_data.make_detection_demo(tmp_path / "demo", number_of_images=3, image_size=(160, 128))
    dataset = detection_dataset.load_detection_dataset(data / "images", data / "annotations", progress=False)
    box_sizes, image_sizes = tiling.measure(dataset.items, dataset.usable_objects)
    assert image_sizes.tolist() == [[160, 128]] * 3
    assert sum(len(values) for values in box_sizes.values()) == sum(len(dataset.usable_objects(item))
                                                                      for item in dataset.items)
    assert set(box_sizes) == set(dataset.classes)


# ----- records and ignore regions --------------------------------------------------------

def _one_item(tmp_path, width, height, objects):
    from helpers.detection import dataset as detection_dataset

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    pixels = np.full((height, width, 3), 200, np.uint8)
    images.write_image(tmp_path / "images" / "field.png", pixels)
    voc.write_voc(voc.VocAnnotation(filename="field.png", width=width, height=height, depth=3,
                                    objects=[voc.VocObject(name, *box) for name, box in objects]),
                  tmp_path / "annotations" / "field.xml")
    return detection_dataset.load_detection_dataset(tmp_path / "images", tmp_path / "annotations", progress=False)


def test_records_hold_windows_with_ignore_regions_and_say_where_they_lie(tmp_path):
    pytest.importorskip("tensorflow")
    from helpers.detection import records

    dataset = _one_item(tmp_path, 300, 100, [("cell", (10, 10, 40, 40)), ("cell", (120, 50, 160, 90))])
    scale = tiling.PixelScale(scale=1.0, window=128, overlap=40, training_overlap=40)
    record_set = records.write_records(dataset.items, dataset.usable_objects, ["cell"], tmp_path / "records", "train",
                                       progress=False, pixel_scale=scale, all_windows=True)
    decoded = records.decode_records(record_set.pattern)
    assert len(decoded) == len(record_set.windows) == 3
    assert [placement["x"] for placement in record_set.windows] == [0, 88, 172]
    first = decoded[0]
    assert (first["height"], first["width"]) == (100, 128)  # full width, the image's own height
    labels = dict(zip(map(tuple, first["boxes"].round().tolist()), first["class_ids"].tolist()))
    assert labels == {(10, 10, 40, 40): 1, (120, 50, 128, 90): records.IGNORE_LABEL}
    assert record_set.number_of_objects == 2  # window 1: the first cell; window 2: the second; ignore regions do not count


def test_a_small_image_is_padded_so_the_parser_keeps_its_scale(tmp_path):
    pytest.importorskip("tensorflow")
    from helpers.detection import records

    dataset = _one_item(tmp_path, 100, 60, [("cell", (10, 10, 40, 40))])
    scale = tiling.PixelScale(scale=1.0, window=128, overlap=32)
    record_set = records.write_records(dataset.items, dataset.usable_objects, ["cell"], tmp_path / "records", "train",
                                       progress=False, pixel_scale=scale)
    decoded = records.decode_records(record_set.pattern)[0]
    assert (decoded["height"], decoded["width"]) == (60, 128)
    assert decoded["boxes"].round().tolist() == [[10, 10, 40, 40]]
    assert decoded["image"][0, 120].tolist() == list(records.PADDING_COLOUR)


def test_anchors_matched_to_an_ignore_region_carry_no_weight():
    tf = pytest.importorskip("tensorflow")
    from helpers.detection import records, train

    targets = {"3": tf.constant([[[[1], [records.IGNORE_LABEL]], [[-1], [2]]]]), "4": tf.constant([[[[records.IGNORE_LABEL]]]])}
    labels = {"cls_targets": targets, "cls_weights": tf.ones([1, 5]), "box_weights": tf.constant([[1.0, 1.0, 0.0, 1.0, 1.0]])}
    _, changed = train.ignore_cut_objects(tf.zeros([1]), labels)
    assert changed["cls_weights"].numpy().tolist() == [[1, 0, 1, 1, 0]]
    assert changed["box_weights"].numpy().tolist() == [[1, 0, 0, 1, 0]]
    assert changed["cls_targets"]["3"].numpy().reshape(-1).tolist() == [1, -1, -1, 2]


# ----- the exported detector's windows, with a stand-in network ---------------------------

def _bright_square_network(images, valid_sizes):
    """A stand-in for ``detect_windows``: one box (class 1, score 0.9) per connected white region of
    each window, clipped to the window, as a network sees an object cut by the window edge."""
    import cv2

    tf = pytest.importorskip("tensorflow")
    batch = images.numpy()
    boxes = np.zeros((len(batch), 20, 4), np.float32)
    scores, classes, counts = np.zeros((len(batch), 20), np.float32), np.zeros((len(batch), 20), np.int32), []
    for index, (window, (height, width)) in enumerate(zip(batch, valid_sizes.numpy())):
        mask = (window[:height, :width, 0] >= 128).astype(np.uint8)
        number, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        found = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:number]]
        if found:
            boxes[index, :len(found)] = found
        scores[index, :len(found)], classes[index, :len(found)] = 0.9, 1
        counts.append(len(found))
    return {"boxes": tf.constant(boxes), "scores": tf.constant(scores), "classes": tf.constant(classes),
            "num_detections": tf.constant(counts, dtype=tf.int32)}


def _detector(scale):
    pytest.importorskip("tensorflow")
    from helpers.detection import export

    return export.ExportedDetector(folder=None, class_names=["cell"], image_size=scale.window, score_threshold=0.5,
                                   remove_background=False, pixel_scale=scale, nms_iou_threshold=0.5,
                                   _windows_signature=_bright_square_network)


def test_objects_cut_by_seams_are_reported_once_in_image_pixels():
    """A 700 x 500 image at scale 0.5 is 350 x 250 input px: 4 windows of 128 px with 40 px overlap.
    Squares on the seams (and one in a corner where four windows meet) come back once each, whole,
    in the image's own pixels."""
    scale = tiling.PixelScale(scale=0.5, window=128, overlap=40)
    pixels = np.zeros((500, 700, 3), np.uint8)
    squares = [(200, 100, 260, 160), (400, 300, 460, 360), (120, 200, 180, 260), (600, 40, 660, 100)]
    for left, top, right, bottom in squares:
        pixels[top:bottom, left:right] = 255
    detector = _detector(scale)
    assert scale.windows_for(700, 500) > 4
    detections = detector.detect(pixels, filename="field.png")
    found = sorted((d.xmin, d.ymin, d.xmax, d.ymax) for d in detections)
    assert len(found) == len(squares)
    assert np.abs(np.array(found) - np.array(sorted(squares))).max() <= 1.0  # interpolation at the square's edge
    assert {d.filename for d in detections} == {"field.png"}


def test_object_size_ratio_changes_the_scale_used():
    scale = tiling.PixelScale(scale=1.0, window=128, overlap=32)
    pixels = np.zeros((300, 300, 3), np.uint8)
    pixels[100:140, 100:140] = 255
    detector = _detector(scale)
    for ratio in (1.0, 2.0, 0.5):
        (detection,) = detector.detect(pixels, object_size_ratio=ratio)
        assert (detection.xmin, detection.ymin, detection.xmax, detection.ymax) == pytest.approx((100, 100, 140, 140), abs=2.5)
    with pytest.raises(errors.ConfigError, match="Object_size_ratio"):
        detector.detect(pixels, object_size_ratio=0)


def test_overlays_of_huge_images_are_downscaled_for_display():
    from helpers import prediction_formats
    from helpers.detection import predict

    source = tiling.ArraySource(np.zeros((3000, 5000, 3), np.uint8))
    box = prediction_formats.Detection(filename="a.png", class_name="cell", score=0.9, xmin=4000, ymin=2000, xmax=4400, ymax=2400)
    overlay = predict._overlay(source, [box], {"cell": (255, 0, 0)})
    assert overlay.shape == (1229, 2048, 3)
    factor = 2048 / 5000
    assert overlay[int(2200 * factor), int(4000 * factor)].tolist() == [255, 0, 0]
