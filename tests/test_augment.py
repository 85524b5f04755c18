"""helpers.detection.augmentation: boxes follow the pixels, counts are honest, outputs are deterministic and resumable.

Geometry is checked with masks: each test image is black with its boxes drawn as filled white
rectangles, so after any transform the white region's extent is where the box must be.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest

from helpers import errors, images, voc
from helpers.detection import augmentation
from helpers.detection import dataset as detection_dataset

WIDTH, HEIGHT = 80, 48  # not square: 90° turns swap width and height


def _mask_image(width, height, boxes):
    """uint8 [H, W, 3]: black, each (xmin, ymin, xmax, ymax) box (integer pixel edges) filled white."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for xmin, ymin, xmax, ymax in boxes:
        pixels[int(ymin):int(ymax), int(xmin):int(xmax)] = 255
    return pixels


def _write_dataset(folder, specs):
    """specs: {stem: [(class, xmin, ymin, xmax, ymax), ...]} -> DetectionDataset of mask images in ``folder``."""
    images_dir, annotations_dir = folder / "images", folder / "annotations"
    for stem, objects in specs.items():
        images.write_image(images_dir / f"{stem}.png", _mask_image(WIDTH, HEIGHT, [obj[1:] for obj in objects]))
        voc.write_voc(voc.VocAnnotation(f"{stem}.png", WIDTH, HEIGHT, 3, [voc.VocObject(*obj) for obj in objects]),
                      annotations_dir / f"{stem}.xml")
    return detection_dataset.load_detection_dataset(images_dir, annotations_dir, progress=False)


def _white_extent(pixels):
    """(xmin, ymin, xmax, ymax) pixel edges of the pixels brighter than mid-grey, or None when there are none."""
    rows, columns = np.nonzero(pixels.mean(axis=2) > 127)
    if not len(rows):
        return None
    return np.array([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1], dtype=float)


def _centroid(pixels):
    """Intensity-weighted centre (x, y) in pixel-edge coordinates (pixel (0, 0) covers 0..1)."""
    weights = pixels.mean(axis=2).astype(float)
    rows, columns = np.indices(weights.shape)
    return np.array([(weights * (columns + 0.5)).sum(), (weights * (rows + 0.5)).sum()]) / weights.sum()


def _hashes(folder):
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _multiply(dataset, output_dir, factor=4, seed=3, **options):
    return augmentation.multiply_dataset(dataset.items, output_dir, factor, seed, dataset.usable_objects,
                                    progress=False, **options)


def _copies(result):
    """[(manifest row, pixels, annotation)] of every copy written."""
    manifest = json.loads((result.output_dir / augmentation.MANIFEST_NAME).read_text(encoding="utf-8"))
    return [(row, images.read_image(result.output_dir / "images" / f"{row['stem']}.png"),
             voc.read_voc(result.output_dir / "annotations" / f"{row['stem']}.xml")) for row in manifest["copies"]]


SINGLE_BOX = {"cell_a": [("cell", 12, 8, 42, 30)], "cell_b": [("cell", 30, 20, 70, 44)],
              "cell_c": [("cell", 4, 4, 20, 14)], "cell_d": [("cell", 50, 2, 78, 40)],
              "cell_e": [("cell", 20, 10, 60, 38)], "cell_f": [("cell", 0, 30, 24, 48)]}


# ---------------------------------------------------------------- each transform on its own

EXACT = [augmentation.Transform(horizontal_flip=True), augmentation.Transform(vertical_flip=True),
         augmentation.Transform(quarter_turns=1), augmentation.Transform(quarter_turns=2), augmentation.Transform(quarter_turns=3),
         augmentation.Transform(horizontal_flip=True, vertical_flip=True, quarter_turns=1)]
WARPED = [augmentation.Transform(scale=1.15, shift_x=0.7, shift_y=-0.4), augmentation.Transform(scale=0.85, shift_x=-1.0),
          augmentation.Transform(quarter_turns=1, scale=1.1, shift_y=1.0, brightness=-20, contrast=1.2, blur_sigma=1.0)]
ROTATED = [augmentation.Transform(angle_degrees=10.0), augmentation.Transform(angle_degrees=-15.0, scale=1.1),
           augmentation.Transform(horizontal_flip=True, quarter_turns=3, angle_degrees=7.0, scale=0.9, noise_sigma=6)]


@pytest.mark.parametrize("transform", EXACT, ids=lambda transform: transform.describe())
def test_flips_and_quarter_turns_move_boxes_exactly(transform):
    box = (12, 8, 42, 30)
    pixels, moved = augmentation.transform_image_and_boxes(_mask_image(WIDTH, HEIGHT, [box]), np.array([box]), transform)
    assert pixels.shape[:2] == tuple(reversed(transform.output_size(WIDTH, HEIGHT)))
    np.testing.assert_array_equal(moved[0], _white_extent(pixels))


@pytest.mark.parametrize("transform", WARPED, ids=lambda transform: transform.describe())
def test_scaling_moves_boxes_with_the_pixels(transform):
    box = (12, 8, 42, 30)
    pixels, moved = augmentation.transform_image_and_boxes(_mask_image(WIDTH, HEIGHT, [box]), np.array([box]), transform)
    width, height = transform.output_size(WIDTH, HEIGHT)
    fit = augmentation.fit_boxes_to_image(moved, width, height)
    np.testing.assert_allclose(fit.boxes[0], _white_extent(pixels), atol=1.0)


@pytest.mark.parametrize("transform", ROTATED, ids=lambda transform: transform.describe())
def test_small_rotations_give_the_bounding_box_of_the_rotated_corners(transform):
    box = (24, 12, 54, 34)
    pixels, moved = augmentation.transform_image_and_boxes(_mask_image(WIDTH, HEIGHT, [box]), np.array([box]), transform)
    extent = _white_extent(pixels)
    # The corner bounding box contains the rotated region, and for a filled rectangle it is also tight.
    assert np.all(moved[0, :2] <= extent[:2] + 0.5) and np.all(moved[0, 2:] >= extent[2:] - 0.5)
    np.testing.assert_allclose(moved[0], extent, atol=1.5)


@pytest.mark.parametrize("transform", WARPED + ROTATED + [augmentation.Transform(scale=0.8)],
                         ids=lambda transform: transform.describe())
def test_warped_pixels_follow_the_box_matrix_to_a_hundredth_of_a_pixel(transform):
    # A smooth blob's intensity centroid maps through the same matrix as the boxes. This catches
    # half-pixel slips between OpenCV's pixel-centre convention and our pixel-edge boxes (0.1-0.2 px).
    rows, columns = np.indices((HEIGHT, WIDTH))
    blob = 255 * np.exp(-((columns + 0.5 - 31.3) ** 2 + (rows + 0.5 - 21.7) ** 2) / (2 * 5.0 ** 2))
    pixels = np.repeat(np.rint(blob).astype(np.uint8)[:, :, None], 3, axis=2)
    smooth = dataclasses.replace(transform, brightness=0.0, contrast=1.0, blur_sigma=0.0, noise_sigma=0.0)
    moved_pixels, _ = augmentation.transform_image_and_boxes(pixels, np.zeros((0, 4)), smooth)
    matrix = augmentation.geometry_matrix(smooth, WIDTH, HEIGHT)
    expected = matrix[:2, :2] @ _centroid(pixels) + matrix[:2, 2]
    np.testing.assert_allclose(_centroid(moved_pixels), expected, atol=0.02)


def test_rotation_is_counterclockwise_on_screen():
    # A box right of the centre moves up (smaller y) when rotated counterclockwise by a positive angle.
    moved = augmentation.transform_boxes(np.array([[60, 22, 70, 26]]), augmentation.Transform(angle_degrees=10.0), WIDTH, HEIGHT)
    assert moved[0, 1] < 22 - 3


def test_intensity_changes_keep_the_geometry_and_stay_uint8():
    pixels = _mask_image(WIDTH, HEIGHT, [(10, 10, 30, 30)])
    transform = augmentation.Transform(contrast=0.8, brightness=25, gamma=1.25, blur_sigma=1.5, noise_sigma=8, noise_seed=4)
    changed, moved = augmentation.transform_image_and_boxes(pixels, np.array([[10, 10, 30, 30]]), transform)
    assert changed.dtype == np.uint8 and changed.shape == pixels.shape
    assert not np.array_equal(changed, pixels)
    np.testing.assert_array_equal(moved, [[10, 10, 30, 30]])
    np.testing.assert_allclose(_white_extent(changed), [10, 10, 30, 30], atol=1.0)


def test_sampled_transforms_stay_in_the_documented_ranges():
    rng = np.random.default_rng(0)
    transforms = [augmentation.sample_transform(rng) for _ in range(400)]
    assert {transform.quarter_turns for transform in transforms} == {0, 1, 2, 3}
    angles = [transform.angle_degrees for transform in transforms if transform.angle_degrees]
    scales = [transform.scale for transform in transforms if transform.scale != 1.0]
    assert 120 < len(angles) < 280 and max(abs(angle) for angle in angles) <= 15.0
    assert 120 < len(scales) < 280 and 0.8 <= min(scales) and max(scales) <= 1.2
    assert any(transform.horizontal_flip for transform in transforms)
    assert any(transform.noise_sigma for transform in transforms) and any(t.blur_sigma for t in transforms)
    assert all(0.8 <= transform.gamma <= 1.25 for transform in transforms)


# ---------------------------------------------------------------- clipping and dropping


def test_fit_boxes_clips_and_drops_by_visible_area():
    # In a 64 x 64 image: inside; 50 % visible (clipped); 20 % visible (dropped); outside; degenerate.
    boxes = np.array([[10, 10, 20, 20], [-10, 0, 10, 10], [-8, 0, 2, 10], [70, 0, 80, 10], [5, 5, 5.5, 20]])
    fit = augmentation.fit_boxes_to_image(boxes, 64, 64, "clip")
    np.testing.assert_array_equal(fit.kept, [0, 1])
    np.testing.assert_array_equal(fit.clipped, [False, True])
    np.testing.assert_allclose(fit.boxes, [[10, 10, 20, 20], [0, 0, 10, 10]])
    assert fit.dropped == 3
    dropping = augmentation.fit_boxes_to_image(boxes, 64, 64, "drop")
    np.testing.assert_array_equal(dropping.kept, [0])
    assert dropping.dropped == 4


def test_zooming_in_clips_or_drops_border_boxes():
    # Scale 1.2 about the centre of 64 x 64: x' = 1.2 (x - 32) + 32.
    boxes = np.array([[0, 20, 10, 40], [0, 0, 10, 10]])
    moved = augmentation.transform_boxes(boxes, augmentation.Transform(scale=1.2), 64, 64)
    np.testing.assert_allclose(moved, [[-6.4, 17.6, 5.6, 41.6], [-6.4, -6.4, 5.6, 5.6]])
    fit = augmentation.fit_boxes_to_image(moved, 64, 64)
    np.testing.assert_array_equal(fit.kept, [0])  # 47 % visible: clipped; 22 % visible: dropped
    assert fit.clipped.tolist() == [True] and fit.dropped == 1


def test_written_boxes_match_the_transformed_white_region(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    result = _multiply(dataset, tmp_path / "run" / "augmented", factor=8, seed=11)
    copies = _copies(result)
    assert len(copies) == 7 * len(SINGLE_BOX) == result.copies_written
    kinds = set()
    for row, pixels, annotation in copies:
        transform = augmentation.Transform(**row["transform"])
        assert (annotation.width, annotation.height) == transform.output_size(WIDTH, HEIGHT)
        assert pixels.shape[:2] == (annotation.height, annotation.width)
        assert annotation.filename == f"{row['stem']}.png"
        if not annotation.objects:
            continue  # dropped: counted, checked in the counting test
        box = np.array([annotation.objects[0].xmin, annotation.objects[0].ymin,
                        annotation.objects[0].xmax, annotation.objects[0].ymax])
        extent = _white_extent(pixels)
        kinds.update(name for name, used in (("turn", transform.quarter_turns % 2), ("angle", transform.angle_degrees),
                                             ("scale", transform.scale != 1.0), ("flip", transform.horizontal_flip))
                     if used)
        if transform.angle_degrees:
            assert np.all(box[:2] <= extent[:2] + 1.0) and np.all(box[2:] >= extent[2:] - 1.0), row
        np.testing.assert_allclose(box, extent, atol=2.5, err_msg=str(row))
    assert kinds == {"turn", "angle", "scale", "flip"}  # every geometric kind was exercised


def test_counts_add_up_and_clipped_boxes_are_marked(tmp_path):
    specs = {f"corner_{index}": [("cell", 0, 0, 14, 10), ("cell", 66, 38, 80, 48), ("cell", 30, 15, 50, 33)]
             for index in range(4)}
    dataset = _write_dataset(tmp_path / "source", specs)
    result = _multiply(dataset, tmp_path / "clip", factor=8, seed=5)
    assert result.boxes_written + result.boxes_dropped == 3 * result.copies_written
    assert result.boxes_clipped > 0 and result.boxes_dropped > 0
    truncated = 0
    for _, _, annotation in _copies(result):
        for obj in annotation.objects:
            assert 0 <= obj.xmin < obj.xmax <= annotation.width and 0 <= obj.ymin < obj.ymax <= annotation.height
            truncated += obj.truncated
    assert truncated == result.boxes_clipped
    assert f"{result.boxes_dropped} dropped" in result.summary()
    assert f"{result.boxes_clipped} of them clipped" in result.summary()
    dropping = _multiply(dataset, tmp_path / "drop", factor=8, seed=5, clip_policy="drop")
    assert dropping.boxes_clipped == 0
    assert dropping.boxes_dropped == result.boxes_dropped + result.boxes_clipped


def test_the_doctor_reads_the_copies_without_problems(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    result = _multiply(dataset, tmp_path / "augmented", factor=3)
    copies = detection_dataset.load_detection_dataset(tmp_path / "augmented" / "images", tmp_path / "augmented" / "annotations",
                                           progress=False)
    assert len(copies.items) == result.copies_written == 2 * len(SINGLE_BOX)
    assert set(copies.problem_counts()) <= {detection_dataset.EMPTY_ANNOTATION}
    assert sum(len(copies.usable_objects(item)) for item in copies.items) == result.boxes_written


# ---------------------------------------------------------------- determinism, boost, safety, resuming


def test_same_seed_same_bytes_other_seed_other_copies(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    first = _hashes(_multiply(dataset, tmp_path / "first", seed=9).output_dir)
    second = _hashes(_multiply(dataset, tmp_path / "second", seed=9).output_dir)
    other = _hashes(_multiply(dataset, tmp_path / "other", seed=10).output_dir)
    assert first == second and len(first) == 2 * 3 * len(SINGLE_BOX) + 1
    assert first.keys() == other.keys()
    different = [name for name in first if name.startswith("images/") and first[name] != other[name]]
    assert len(different) >= 0.8 * 3 * len(SINGLE_BOX)


def test_each_image_gets_its_own_transforms_independent_of_the_others(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    whole = _multiply(dataset, tmp_path / "whole", factor=3)
    rows = [row for row, _, _ in _copies(whole)]
    first_copies = [json.dumps(row["transform"], sort_keys=True) for row in rows if row["stem"].endswith("_aug1")]
    assert len(set(first_copies)) == len(SINGLE_BOX)  # copy 1 of each image is transformed differently
    subset = [item for item in dataset.items if item.stem in ("cell_b", "cell_e")]
    part = augmentation.multiply_dataset(subset, tmp_path / "part", 3, 3, dataset.usable_objects, progress=False)
    whole_files, part_files = _hashes(whole.output_dir), _hashes(part.output_dir)
    shared = [name for name in part_files if name != augmentation.MANIFEST_NAME]
    assert len(shared) == 2 * 2 * 2 and all(part_files[name] == whole_files[name] for name in shared)


def test_rare_class_boost_gives_images_with_rare_classes_more_copies(tmp_path):
    specs = {f"common_{index}": [("RBC", 2, 2, 20, 20), ("RBC", 40, 20, 60, 40)] for index in range(8)}
    specs.update({f"rare_{index}": [("RBC", 2, 2, 20, 20), ("Platelet", 50, 10, 60, 20)] for index in range(2)})
    dataset = _write_dataset(tmp_path / "source", specs)
    boosted = _multiply(dataset, tmp_path / "boosted", factor=3, rare_class_boost=1.0)
    assert boosted.rare_classes == ["Platelet"]
    written = [path.name for path in (tmp_path / "boosted" / "images").iterdir()]
    assert sum(name.startswith("rare_0_") for name in written) == 2 + 2  # factor - 1, plus round(1.0 * 2)
    assert sum(name.startswith("common_0_") for name in written) == 2
    assert boosted.copies_written == 8 * 2 + 2 * 4
    plain = _multiply(dataset, tmp_path / "plain", factor=3)
    assert plain.rare_classes == [] and plain.copies_written == 10 * 2
    share = lambda result: result.boxes_per_class.get("Platelet", 0) / result.boxes_written  # noqa: E731
    assert share(boosted) > share(plain)
    assert "Platelet" in boosted.summary()
    small = _multiply(dataset, tmp_path / "small", factor=2, rare_class_boost=0.1)
    assert small.copies_written == 8 * 1 + 2 * 2  # at least one extra copy when the boost is on


def test_rare_classes_rule():
    assert augmentation.rare_classes({"RBC": 4000, "WBC": 370, "Platelets": 360}) == ["Platelets", "WBC"]
    assert augmentation.rare_classes({"a": 10, "b": 6}) == []
    assert augmentation.rare_classes({"only": 3}) == [] and augmentation.rare_classes({}) == []


def test_sources_untouched_and_nothing_written_outside_the_output(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    source_before = _hashes(tmp_path / "source")
    everything_before = _hashes(tmp_path)
    output_dir, preview = tmp_path / "run" / "augmented", tmp_path / "run" / "plots" / "preview.png"
    result = _multiply(dataset, output_dir, factor=2, rare_class_boost=2.0)
    augmentation.preview_grid(result, preview)
    assert _hashes(tmp_path / "source") == source_before
    everything_after = _hashes(tmp_path)
    new = set(everything_after) - set(everything_before)
    assert new and all(name.startswith("run/augmented/") or name == "run/plots/preview.png" for name in new)
    assert all(everything_after[name] == digest for name, digest in everything_before.items())


def test_output_inside_or_around_the_source_is_refused(tmp_path):
    dataset = _write_dataset(tmp_path / "data", SINGLE_BOX)
    for output_dir in (tmp_path / "data" / "images" / "augmented", tmp_path / "data"):
        with pytest.raises(errors.ConfigError, match="model_path outside your data folders"):
            _multiply(dataset, output_dir)
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == ["annotations", "images"]


def test_second_call_reuses_and_other_parameters_are_refused(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    output_dir = tmp_path / "augmented"
    first = _multiply(dataset, output_dir, factor=3)
    times = {path: path.stat().st_mtime_ns for path in output_dir.rglob("*")}
    contents = _hashes(output_dir)
    second = _multiply(dataset, output_dir, factor=3)
    assert not first.reused and second.reused
    assert {path: path.stat().st_mtime_ns for path in output_dir.rglob("*")} == times
    assert (second.copies_written, second.boxes_written, second.examples) == \
           (first.copies_written, first.boxes_written, first.examples)
    assert "reused" in second.summary()
    with pytest.raises(errors.ConfigError, match=r"factor 3 -> 4.*new model_name"):
        _multiply(dataset, output_dir, factor=4)
    with pytest.raises(errors.ConfigError, match="seed"):
        _multiply(dataset, output_dir, factor=3, seed=99)
    assert _hashes(output_dir) == contents  # nothing deleted or rewritten


def test_interrupted_output_is_completed_and_foreign_files_are_refused(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    output_dir = tmp_path / "augmented"
    _multiply(dataset, output_dir, factor=2)
    complete = _hashes(output_dir)
    (output_dir / "images" / "cell_c_aug1.png").unlink()  # as if the session died before this file
    resumed = _multiply(dataset, output_dir, factor=2)
    assert not resumed.reused and _hashes(output_dir) == complete
    manifest_path = output_dir / augmentation.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest_path.write_text(json.dumps({"parameters": manifest["parameters"], "complete": False}), encoding="utf-8")
    assert not _multiply(dataset, output_dir, factor=2).reused  # files all there, but the run never finished
    assert _hashes(output_dir) == complete
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(errors.ConfigError, match="manifest.json"):
        _multiply(dataset, foreign)
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty_run_folder"
    empty.mkdir()
    assert _multiply(dataset, empty, factor=2).copies_written == len(SINGLE_BOX)


def test_factor_one_writes_nothing(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    result = _multiply(dataset, tmp_path / "augmented", factor=1, rare_class_boost=3.0)
    assert result.copies_written == 0 and result.examples == [] and not (tmp_path / "augmented").exists()
    assert "No augmented copies" in result.summary()
    path = augmentation.preview_grid(result, tmp_path / "plots" / "empty.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("options, field", [
    ({"factor": 0}, "augmentation_factor"), ({"factor": 9}, "augmentation_factor"),
    ({"factor": True}, "augmentation_factor"), ({"factor": 2.5}, "augmentation_factor"),
    ({"rare_class_boost": 5.0}, "rare_class_boost"), ({"rare_class_boost": -1}, "rare_class_boost"),
    ({"clip_policy": "wrap"}, "clip_policy"), ({"seed": -1}, "seed"),
])
def test_bad_parameters_are_config_errors(tmp_path, options, field):
    dataset = _write_dataset(tmp_path / "source", {"one": [("cell", 1, 1, 9, 9)]})
    with pytest.raises(errors.ConfigError, match=field):
        _multiply(dataset, tmp_path / "augmented", **options)
    assert not (tmp_path / "augmented").exists()


def test_preview_grid_writes_a_png_with_one_row_per_example(tmp_path):
    dataset = _write_dataset(tmp_path / "source", SINGLE_BOX)
    result = _multiply(dataset, tmp_path / "augmented", factor=2)
    two = augmentation.preview_grid(result, tmp_path / "plots" / "two.png", count=2)
    four = augmentation.preview_grid(result, tmp_path / "plots" / "four.png", count=4)
    assert two.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (two_width, two_height), (four_width, four_height) = images.image_size(two), images.image_size(four)
    assert two_width == four_width and four_height > 1.7 * two_height
    assert os.path.getsize(four) > 5000
    assert [source for source, _ in result.examples] == sorted(SINGLE_BOX)
