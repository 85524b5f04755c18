"""Unit tests of grading: preprocessing, ordinal decoding, thresholds, sampler, data check, split, heads."""

import collections
import csv
import pathlib

import numpy as np
import pytest

from helpers import config as config_module
from helpers import errors, images
from helpers import split as split_module
from helpers.grading import dataset as dataset_module
from helpers.grading import ordinal, preprocessing
from helpers.grading.config import GradingConfig, parse_multipliers
from tests.conftest import shared_dataset


# ---------------------------------------------------------------- preprocessing


def fundus_like(height=200, width=300, centre=(170, 95), radius=80, seed=0):
    """uint8 [H, W, 3]: an orange disc with texture on a black (slightly noisy) border."""
    import cv2

    rng = np.random.default_rng(seed)
    canvas = rng.integers(0, 6, (height, width, 3)).astype(np.uint8)  # a dark, not perfectly black border
    disc = np.zeros((height, width), np.uint8)
    cv2.circle(disc, centre, radius, 255, -1)
    colour = np.clip(np.array([190, 90, 40]) + rng.normal(0, 15, (height, width, 1)), 0, 255).astype(np.uint8)
    canvas[disc > 0] = colour[disc > 0]
    return canvas


def test_crop_finds_the_disc_on_a_fundus_like_image():
    pixels = fundus_like()
    top, bottom, left, right = preprocessing.disc_box(pixels)
    # The disc spans rows 95±80 and columns 170±80 (a few pixels lost where the circle's edge is thin).
    assert abs(top - 15) <= 3 and abs(bottom - 176) <= 3 and abs(left - 90) <= 3 and abs(right - 251) <= 3
    cropped = preprocessing.crop_to_disc(pixels)
    assert cropped.shape[0] == cropped.shape[1] == max(bottom - top, right - left)
    assert cropped[cropped.shape[0] // 2, cropped.shape[1] // 2].mean() > 50  # the disc's centre is kept


def test_crop_of_a_disc_clipped_top_and_bottom_pads_to_a_square():
    pixels = fundus_like(height=160, width=300, centre=(150, 80), radius=100)  # like dr_srahim: clipped
    cropped = preprocessing.crop_to_disc(pixels)
    assert cropped.shape[:2] == (201, 201) or abs(cropped.shape[0] - 200) <= 3
    assert cropped[:5].max() <= 6  # black padding rows above the clipped disc


def test_crop_leaves_an_image_without_border_unchanged():
    pixels = np.full((50, 80, 3), 120, np.uint8)
    assert preprocessing.crop_to_disc(pixels).shape == (50, 80, 3)
    assert preprocessing.disc_box(np.zeros((10, 10, 3), np.uint8)) is None


def test_local_colour_normalisation_maps_flat_areas_to_128_and_keeps_small_lesions():
    import cv2

    pixels = np.full((100, 100, 3), 150, np.uint8)
    cv2.circle(pixels, (50, 50), 2, (60, 20, 20), -1)  # a small dark-red dot
    normalised = preprocessing.local_colour_normalisation(pixels, sigma=5)
    assert np.all(np.abs(normalised[:20, :20].astype(int) - 128) <= 1)
    assert normalised[50, 50].max() < 60  # the dot stands out strongly against the grey
    expected = np.clip(4.0 * pixels - 4.0 * cv2.GaussianBlur(pixels, (0, 0), 5).astype(float) + 128, 0, 255)
    assert np.abs(normalised.astype(float) - expected).max() <= 1.5


def test_preprocess_gives_the_network_size_and_preview_is_written(tmp_path):
    path = images.write_image(tmp_path / "eye.png", fundus_like())
    assert preprocessing.load_preprocessed(path, 64, True, True).shape == (64, 64, 3)
    figure = preprocessing.preview([path], ["grade 1"], 64, True, True, tmp_path / "preview.png")
    assert figure.is_file() and figure.stat().st_size > 1000


# ---------------------------------------------------------------- ordinal decoding and thresholds


def manual_quadratic_kappa(truth, predicted, num_grades):
    """Cohen's quadratic weighted kappa from its definition (observed vs expected weighted disagreement)."""
    observed = np.zeros((num_grades, num_grades))
    for true, guess in zip(truth, predicted):
        observed[true, guess] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    weights = np.subtract.outer(np.arange(num_grades), np.arange(num_grades)) ** 2
    return 1 - (weights * observed).sum() / (weights * expected).sum()


def test_threshold_search_improves_kappa_and_kappa_equals_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    truth = rng.choice(5, size=600, p=[0.5, 0.15, 0.2, 0.1, 0.05])
    values = 0.55 * truth + 0.3 + rng.normal(0, 0.35, truth.size)  # squashed and shifted: 0.5, 1.5... are wrong
    default = ordinal.regression_grades(values, ordinal.default_thresholds(5))
    thresholds = ordinal.optimise_thresholds(values, truth, 5)
    tuned = ordinal.regression_grades(values, thresholds)
    assert np.all(np.diff(thresholds) > 0)
    kappa_default, kappa_tuned = ordinal.quadratic_kappa(truth, default, 5), ordinal.quadratic_kappa(truth, tuned, 5)
    assert kappa_tuned > kappa_default + 0.05
    assert kappa_tuned == pytest.approx(cohen_kappa_score(truth, tuned, weights="quadratic"), abs=1e-12)
    assert kappa_tuned == pytest.approx(manual_quadratic_kappa(truth, tuned, 5), abs=1e-9)
    for predicted in (default, tuned, np.zeros_like(truth), rng.integers(0, 5, truth.size)):
        # the search's fast kappa is scikit-learn's
        assert ordinal.search_kappa(truth, predicted, 5) == pytest.approx(
            cohen_kappa_score(truth, predicted, labels=list(range(5)), weights="quadratic"), abs=1e-12)


def test_regression_decoding_counts_thresholds_and_scores_rank_like_the_values():
    values = np.array([-1.0, 0.4, 0.6, 1.7, 3.2, 9.0])
    grades, scores = ordinal.decode("regression", values.reshape(-1, 1), 5)
    assert grades.tolist() == [0, 0, 1, 2, 3, 4]
    assert np.allclose(scores.sum(axis=1), 1) and np.all(scores >= 0)
    referable = scores[:, 2:].sum(axis=1)
    assert np.all(np.diff(referable) > 0)  # the referable ROC ranks exactly as the regression value
    assert scores.argmax(axis=1).tolist() == grades.tolist()


def test_coral_decoding_counts_cumulative_probabilities_above_one_half():
    cumulative = np.array([[0.1, 0.05, 0.01, 0.0],   # grade 0
                           [0.9, 0.6, 0.2, 0.1],     # grade 2
                           [0.99, 0.98, 0.9, 0.7],   # grade 4
                           [0.8, 0.3, 0.6, 0.1]])    # not rank-consistent: 2 above 0.5
    grades, scores = ordinal.decode("cumulative", cumulative, 5)
    assert grades.tolist() == [0, 2, 4, 2]
    assert np.allclose(scores[1], [0.1, 0.3, 0.4, 0.1, 0.1])
    assert np.allclose(scores.sum(axis=1), 1) and np.all(scores >= 0)
    assert scores[3, 2] == 0  # P(>1) - P(>2) is negative there: clipped, then renormalised


def test_softmax_decoding_is_argmax():
    grades, scores = ordinal.decode("softmax", np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), 3)
    assert grades.tolist() == [1, 0] and np.allclose(scores.sum(axis=1), 1)


# ---------------------------------------------------------------- sampler


def test_sampler_multipliers_set_each_grades_share():
    grades = np.array([0] * 70 + [1] * 20 + [2] * 10)
    probabilities = ordinal.image_sampling_probabilities(grades, [1, 1, 2])
    assert probabilities.sum() == pytest.approx(1)
    shares = [probabilities[grades == grade].sum() for grade in range(3)]
    assert shares == pytest.approx([0.25, 0.25, 0.5])
    assert np.allclose(probabilities[grades == 2], 0.05)  # uniform within a grade
    assert ordinal.sampling_shares([1, 3, 1], present=[True, True, False]).tolist() == [0.25, 0.75, 0.0]


def test_tf_data_sampler_draws_grades_in_proportion_to_the_multipliers():
    from helpers.classification import pipeline

    labels = np.array([0] * 40 + [1] * 8 + [2] * 4, dtype=np.int32)
    paths = np.array([f"image_{index}.png" for index in range(len(labels))])
    dataset = pipeline._balanced(paths, labels, np.ones(len(labels), np.float32), seed=3,
                                 sampling_weights=[1.0, 1.0, 2.0])
    drawn = np.array([int(label) for _, label, _ in dataset.take(2000).as_numpy_iterator()])
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    assert shares == pytest.approx([0.25, 0.25, 0.5], abs=0.04)


def test_multipliers_field_is_checked():
    assert parse_multipliers("", 3) == [1.0, 1.0, 1.0] and parse_multipliers("1, 2,3", 3) == [1.0, 2.0, 3.0]
    with pytest.raises(errors.ConfigError, match="sampling_multipliers"):
        parse_multipliers("1,2", 3)
    with pytest.raises(errors.ConfigError, match="sampling_multipliers"):
        config_module.config_from_form(GradingConfig, "quick", sampling_multipliers="1,0,1,1,1")
    with pytest.raises(errors.ConfigError, match="referable_threshold"):
        config_module.config_from_form(GradingConfig, "quick", num_grades=3, referable_threshold=3)


# ---------------------------------------------------------------- doctor


def write_dataset(folder: pathlib.Path, rows, files) -> tuple[pathlib.Path, pathlib.Path]:
    """An images folder with ``files`` {name: seed} and a CSV with ``rows`` [(filename, grade, patient)]."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    for name, seed in files.items():
        images.write_image(images_dir / name, fundus_like(60, 90, (45, 30), 25, seed=seed))
    labels = folder / "grades.csv"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "grade", "patient_id"])
        writer.writerows(rows)
    return images_dir, labels


def test_doctor_lists_each_kind_of_problem_and_keeps_the_rest(tmp_path):
    files = {f"eye_{index}.png": index for index in range(8)}
    files["copy_of_eye_0.png"] = 0  # the same bytes as eye_0.png
    files["unlisted.png"] = 99
    rows = [(f"eye_{index}.png", index % 2, f"P{index // 2}") for index in range(6)]
    rows += [("eye_6.png", 7, "P3"), ("eye_7.png", "2.5", "P3"), ("missing.png", 1, "P9"),
             ("copy_of_eye_0.png", 1, "P0"), ("eye_1.png", 1, "P0")]
    images_dir, labels = write_dataset(tmp_path, rows, files)
    dataset = dataset_module.load_grading_dataset(images_dir, labels, num_grades=3, group_column="patient_id",
                                                  minimum_images_per_grade=3, progress=False)
    kinds = collections.Counter(problem.kind for problem in dataset.problems)
    assert kinds[dataset_module.GRADE_OUT_OF_RANGE] == 2  # 7 and 2.5
    assert kinds["missing_file"] == 1 and kinds["unlabelled_image"] == 1 and kinds["duplicate_row"] == 1
    assert kinds["duplicate_with_other_label"] == 1  # eye_0 (grade 0) and its copy (grade 1): both left out
    assert kinds[dataset_module.GRADE_WITHOUT_IMAGES] == 1  # grade 2
    assert kinds["few_images"] == 1  # grade 0: eye_2 and eye_4 are left, fewer than 3
    assert sorted(item.key for item in dataset.items) == ["eye_1.png", "eye_2.png", "eye_3.png", "eye_4.png",
                                                          "eye_5.png"]
    assert dataset.class_counts() == {"0": 2, "1": 3, "2": 0}
    assert {item.group for item in dataset.items} == {"P0", "P1", "P2"}
    text = dataset.summary_text()
    assert "grade_out_of_range (2)" in text and "Fix:" in text


def test_doctor_names_the_missing_column(tmp_path):
    images_dir, labels = write_dataset(tmp_path, [("eye_0.png", 0, "P0")], {"eye_0.png": 0})
    with pytest.raises(errors.DatasetError, match="no column level.*grade_column"):
        dataset_module.load_grading_dataset(images_dir, labels, grade_column="level", progress=False)


# ---------------------------------------------------------------- dr_srahim: group integrity


def test_split_of_dr_srahim_keeps_both_eyes_of_a_patient_together(tmp_path):
    source = shared_dataset("dr_srahim")
    dataset = dataset_module.load_grading_dataset(source / "images", source / "labels.csv", filename_column="image",
                                                  grade_column="dr_grade", group_column="patient_id", progress=False)
    assert len(dataset.items) == 596 and dataset.class_counts() == {"0": 276, "1": 99, "2": 166, "3": 32, "4": 23}
    grades_per_patient = collections.defaultdict(set)
    for item in dataset.items:
        grades_per_patient[item.group].add(item.label)
    assert sum(len(grades) > 1 for grades in grades_per_patient.values()) == 76  # as SOURCE.md says
    result = split_module.split_dataset([item.key for item in dataset.items], dataset.grades(), 0.2, seed=42,
                                        groups=[item.group for item in dataset.items], group_name="patient_id")
    patient = {item.key: item.group for item in dataset.items}
    train, validation = {patient[key] for key in result.train}, {patient[key] for key in result.validation}
    assert not train & validation and result.grouped_by == "patient_id"
    assert 0.15 < len(result.validation) / 596 < 0.25
    assert {int(item.label) for item in dataset.items if item.key in set(result.validation)} == {0, 1, 2, 3, 4}


# ---------------------------------------------------------------- heads and losses


def test_losses_take_one_hot_targets():
    import keras

    from helpers.grading import model as grading_model

    one_hot = np.eye(4, dtype=np.float32)[[0, 2, 3]]
    regression = grading_model.ExpectedGradeSquaredError(reduction=None)(one_hot, np.array([[0.5], [2.0], [1.0]], np.float32))
    assert np.allclose(keras.ops.convert_to_numpy(regression), [0.25, 0.0, 4.0])
    cumulative = np.array([[0.2, 0.1, 0.1], [0.9, 0.8, 0.3], [0.9, 0.9, 0.6]], np.float32)
    targets = np.array([[0, 0, 0], [1, 1, 0], [1, 1, 1]], np.float32)
    expected = -(targets * np.log(cumulative) + (1 - targets) * np.log(1 - cumulative)).sum(axis=1)
    loss = grading_model.CumulativeBinaryCrossentropy(reduction=None)(one_hot, cumulative)
    assert np.allclose(keras.ops.convert_to_numpy(loss), expected, atol=1e-5)


def tiny_base(backbone_name, number_of_classes, image_size, **options):
    """A stand-in for the classification builder with the same head layer names (fast to build)."""
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = keras.layers.Conv2D(4, 3, name="convolution")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="head_pooling")(features)
    dropped = keras.layers.Dropout(options.get("dropout", 0.2), name="head_dropout")(pooled)
    outputs = keras.layers.Dense(number_of_classes, activation="softmax", name="head_classes")(dropped)
    return keras.Model(inputs, outputs)


@pytest.mark.filterwarnings("ignore:Skipping variable loading")  # the optimizer was never built (no training step)
@pytest.mark.parametrize("head, width", [("regression", 1), ("cumulative", 4), ("softmax", 5)])
def test_each_head_replaces_the_softmax_layer_and_survives_saving(tmp_path, head, width):
    from helpers.classification import model as classification_model
    from helpers.grading import model as grading_model

    model = grading_model.build_grading_model(head, "mobilenetv3small", 5, 16, build_base=tiny_base, dropout=0.1)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    outputs = np.asarray(model.predict(batch, verbose=0))
    assert outputs.shape == (2, width) and "head_classes" not in {layer.name for layer in model.layers}
    grading_model.compile_grading_model(model, "adam", head)
    model.save(tmp_path / "model.keras")
    reloaded = classification_model.load_classifier(tmp_path / "model.keras", compile=True)
    assert grading_model.head_of(reloaded) == head
    assert np.allclose(np.asarray(reloaded.predict(batch, verbose=0)), outputs, atol=1e-5)
    if head == "cumulative":
        assert np.all(np.diff(outputs, axis=1) <= 0)  # ordered at initialisation (decreasing biases)


def test_grading_task_feeds_the_classification_pipeline_without_changing_it(tmp_path):
    from helpers.classification import pipeline
    from helpers.classification import train as classification_train
    from helpers.grading import model as grading_model
    from helpers.grading import train as grading_train

    config = config_module.config_from_form(GradingConfig, "quick", head="cumulative", sampling_multipliers="1,1,3",
                                            num_grades=3, referable_threshold=1)
    task = grading_train.grading_task(config)
    assert (task.monitor, task.history_columns, task.sampling_weights) == ("validation_kappa", grading_train.HISTORY_COLUMNS,
                                                                          (1.0, 1.0, 3.0))
    assert classification_train.CLASSIFICATION.monitor == "validation_balanced_accuracy"  # untouched default
    assert classification_train.TrainingTask().loader is pipeline.load_resized
    model = task.build_model(config.backbone, config.num_grades, config.image_size, dropout=0.0)
    assert grading_model.head_of(model) == "cumulative" and model.output.shape[-1] == config.num_grades - 1
    path = tmp_path / "fundus.png"
    images.write_image(path, fundus_like())
    batch = next(iter(pipeline.evaluation_dataset([path], config.image_size, 1, loader=task.loader)))
    expected = preprocessing.load_preprocessed(path, config.image_size, True, True)
    assert np.array_equal(np.asarray(batch[0]), expected.astype(np.float32))
    assert not np.array_equal(expected, pipeline.load_resized(path, config.image_size))  # the loader did matter


def test_validation_figures_tune_regression_thresholds_on_the_validation_images():
    from helpers.grading import train as grading_train

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 5, 200)
    outputs = (0.5 * truth + 0.2 + rng.normal(0, 0.2, truth.size)).reshape(-1, 1)
    figures = grading_train.validation_figures("regression", outputs, truth, 5)
    default = ordinal.quadratic_kappa(truth, ordinal.regression_grades(outputs, ordinal.default_thresholds(5)), 5)
    assert figures["validation_kappa"] > default and len(figures["thresholds"]) == 4
    assert figures["validation_loss"] == pytest.approx(np.mean((outputs[:, 0] - truth) ** 2))


# ---------------------------------------------------------------- Grad-CAM and the QC browser


@pytest.mark.filterwarnings("ignore:Skipping variable loading")
@pytest.mark.parametrize("head", ["regression", "cumulative", "softmax"])
def test_gradcam_explains_the_expected_grade_of_every_head(head):
    from helpers.grading import gradcam
    from helpers.grading import model as grading_model

    model = grading_model.build_grading_model(head, "mobilenetv3small", 5, 16, build_base=tiny_base)
    image = np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    heatmap, expected = gradcam.gradcam_heatmap(model, image, head)
    assert heatmap.shape == (14, 14) and np.isfinite(heatmap).all() and 0 <= heatmap.min() <= heatmap.max() <= 1
    outputs = np.asarray(model.predict(image[None], verbose=0), dtype=np.float64)[0]
    by_head = {"regression": lambda: outputs[0], "cumulative": outputs.sum,
               "softmax": lambda: (np.arange(5) * outputs).sum()}
    assert expected == pytest.approx(by_head[head](), abs=1e-5)


def bright_patch_grader(head_weight: float):
    """A regression grader whose grade is head_weight × the mean brightness (linear features, no bias)."""
    from helpers.grading import model as grading_model

    model = grading_model.build_grading_model("regression", "mobilenetv3small", 5, 16, build_base=tiny_base)
    kernel, bias = model.get_layer("convolution").get_weights()
    model.get_layer("convolution").set_weights([np.full_like(kernel, 1 / 27), np.zeros_like(bias)])
    kernel, bias = model.get_layer("head_grade").get_weights()
    model.get_layer("head_grade").set_weights([np.full_like(kernel, head_weight), np.zeros_like(bias)])
    return model


def test_gradcam_is_red_where_the_image_raises_the_grade_and_empty_where_nothing_does():
    from helpers.grading import gradcam

    image = np.zeros((16, 16, 3), np.float32)
    image[2:6, 9:13] = 255  # a bright "lesion" top right
    heatmap, expected = gradcam.gradcam_heatmap(bright_patch_grader(1.0), image, "regression")
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert 0 <= row <= 5 and 7 <= column <= 12 and expected > 0
    assert heatmap[10:, :6].max() == 0  # the dark bottom left did not raise the grade
    lowering, _ = gradcam.gradcam_heatmap(bright_patch_grader(-1.0), image, "regression")
    assert lowering.max() == 0  # brightness lowers this model's grade: nothing to show


@pytest.fixture
def browsed_result(tmp_path):
    """A QualityResult over three images (one right, two wrong) with a tiny cumulative grader."""
    import keras

    from helpers import runs
    from helpers.classification.dataset import ClassificationItem
    from helpers.grading import model as grading_model, quality

    keras.utils.set_random_seed(0)
    model = grading_model.build_grading_model("cumulative", "mobilenetv3small", 3, 16, build_base=tiny_base)
    items, labels = {}, {"a.png": "0", "b.png": "2", "c.png": "1"}
    for seed, (key, label) in enumerate(labels.items()):
        images.write_image(tmp_path / key, fundus_like(seed=seed))
        items[key] = ClassificationItem(key, tmp_path / key, label, None, "", 300, 200)
    settings = {"head": "cumulative", "num_grades": 3, "thresholds": None, "image_size": 16, "crop_to_disc": True,
                "colour_normalisation": True}
    scores = {"a.png": np.array([0.7, 0.2, 0.1]), "b.png": np.array([0.6, 0.3, 0.1]), "c.png": np.array([0.1, 0.3, 0.6])}
    result = quality.QualityResult(runs.RunFolder(root=tmp_path / "run"), None, settings, "test", None, items,
                                    {"a.png": 0, "b.png": 0, "c.png": 2}, scores, model)
    result.mistakes = quality._largest_errors(result)
    return result


def test_browser_data_has_true_and_predicted_grade_and_a_finite_gradcam_per_image(browsed_result):
    from helpers.grading import gradcam

    expected = {"a.png": (0, 0, 0.7), "b.png": (2, 0, 0.6), "c.png": (1, 2, 0.6)}
    for key, (true_grade, predicted, score) in expected.items():
        shown = gradcam.explain(browsed_result, key)
        assert (shown.key, shown.true_grade, shown.predicted_grade) == (key, true_grade, predicted)
        assert shown.score == pytest.approx(score)
        assert shown.image.shape == (16, 16, 3) and shown.image.dtype == np.uint8
        assert shown.heatmap.shape == (14, 14) and np.isfinite(shown.heatmap).all()
        assert 0 <= shown.heatmap.min() <= shown.heatmap.max() <= 1 and 0 <= shown.expected <= 2
    # The image is the one the network sees: the same preprocessing as training and prediction.
    assert np.array_equal(gradcam.explain(browsed_result, "a.png").image,
                          preprocessing.load_preprocessed(browsed_result.items["a.png"].path, 16, True, True))
    assert [mistake["key"] for mistake in browsed_result.mistakes] == ["b.png", "c.png"]  # furthest first


def test_browser_line_figure_and_widget(browsed_result):
    from helpers.grading import browser, gradcam

    assert browser.describe(browsed_result, "b.png") == ("b.png: true grade 2, predicted 0 (0.60) – WRONG by 2 "
                                                          "grade(s). Scores per grade: 0: 0.60, 1: 0.30, 2: 0.10")
    assert "– correct." in browser.describe(browsed_result, "a.png")
    figure = gradcam.gradcam_figure(browsed_result, "c.png", browsed_result.run.qc / "c.png")
    assert figure.stat().st_size > 1000
    pytest.importorskip("ipywidgets")
    widget = browsed_result.browse()
    slider, only_mistakes = widget.children[0].children
    assert slider.max == 2 and (browsed_result.run.qc / "browser_current.png").is_file()
    only_mistakes.value = True
    assert slider.max == 1  # two wrongly graded images


@pytest.mark.filterwarnings("ignore:Skipping variable loading")
def test_a_model_with_another_head_is_refused_when_continuing():
    from helpers.grading import model as grading_model
    from helpers.grading import train as grading_train

    config = config_module.config_from_form(GradingConfig, "quick", head="cumulative", num_grades=5)
    grading_train.check_continued_grader(config, grading_model.build_grading_model("cumulative", "x", 5, 16, build_base=tiny_base),
                                  config.grade_names)
    with pytest.raises(errors.ModelError, match="continue_from: that model has a regression head with 1 outputs"):
        grading_train.check_continued_grader(config, grading_model.build_grading_model("regression", "x", 5, 16, build_base=tiny_base),
                                      config.grade_names)
