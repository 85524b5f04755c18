"""helpers.split: seeded, stratified, group-aware splits; the split.json record; clear errors."""

import collections
import json

import numpy as np
import pytest

from helpers import errors, split


def _detection_case(count=120, seed=0):
    """Keys and class-presence labels: RBC common, WBC medium, Platelets rare, some background images."""
    rng = np.random.default_rng(seed)
    keys = [f"BloodImage_{index:05d}" for index in range(count)]
    labels = []
    for _ in keys:
        present = set()
        if rng.random() < 0.85:
            present.add("RBC")
        if rng.random() < 0.4:
            present.add("WBC")
        if rng.random() < 0.08:
            present.add("Platelets")
        labels.append(present)
    return keys, labels


def _group_case(groups=30, seed=1):
    """30 patients with 1..6 images each; one grade (0..4) per image, mostly the patient's grade."""
    rng = np.random.default_rng(seed)
    keys, labels, patients = [], [], []
    for patient in range(groups):
        grade = int(rng.integers(0, 5))
        for image in range(int(rng.integers(1, 7))):
            keys.append(f"patient{patient:02d}_eye{image}.jpg")
            labels.append(grade if rng.random() < 0.8 else int(rng.integers(0, 5)))
            patients.append(f"P{patient:02d}")
    return keys, labels, patients


def test_same_seed_same_split_and_another_seed_differs():
    keys, labels = _detection_case()
    first = split.split_dataset(keys, labels, 0.2, 0.1, seed=7)
    again = split.split_dataset(list(reversed(keys)), list(reversed(labels)), 0.2, 0.1, seed=7)
    other = split.split_dataset(keys, labels, 0.2, 0.1, seed=8)
    assert first == again  # the order of the input does not matter, only the seed
    assert first.validation != other.validation


def test_every_key_lands_in_exactly_one_split_and_lists_are_sorted():
    keys, labels = _detection_case()
    result = split.split_dataset(keys, labels, 0.2, 0.1)
    together = result.train + result.validation + result.test
    assert sorted(together) == sorted(keys) and len(together) == len(set(together))
    for name in ("train", "validation", "test"):
        assert getattr(result, name) == sorted(getattr(result, name))


@pytest.mark.parametrize("validation_fraction, test_fraction", [(0.15, 0.0), (0.2, 0.1), (0.3, 0.3), (0.05, 0.0)])
def test_fractions_are_respected_approximately(validation_fraction, test_fraction):
    keys, labels = _detection_case(count=200)
    result = split.split_dataset(keys, labels, validation_fraction, test_fraction)
    counts = result.counts()
    # Rounding per stratum plus at most one extra item per stratum (4 strata) for the minimum-one rule.
    assert abs(counts["validation"] - validation_fraction * 200) <= 4
    assert abs(counts["test"] - test_fraction * 200) <= 4
    assert counts["train"] + counts["validation"] + counts["test"] == 200


def test_zero_validation_fraction_gives_an_empty_validation_set():
    keys, labels = _detection_case()
    result = split.split_dataset(keys, labels, 0.0)
    assert result.validation == [] and result.test == [] and len(result.train) == len(keys)


def test_every_class_with_two_or_more_images_reaches_validation():
    keys, labels = _detection_case(count=60)
    # Two extra rare classes: "Eosinophil" in exactly 2 images, "Basophil" in exactly 1.
    labels[3] = labels[3] | {"Eosinophil"}
    labels[40] = labels[40] | {"Eosinophil"}
    labels[17] = labels[17] | {"Basophil"}
    for seed in range(5):
        result = split.split_dataset(keys, labels, 0.1, seed=seed)
        by_key = dict(zip(keys, labels))
        in_validation = set().union(*(by_key[key] for key in result.validation))
        assert {"RBC", "WBC", "Platelets", "Eosinophil"} <= in_validation
        # A class seen in one image only is kept for training, never held out.
        assert "basophil" not in {name.lower() for key in result.validation for name in by_key[key]}
        assert keys[17] in result.train
    assert "rarest class per image" in result.stratified_by
    assert result.stratum_counts["Eosinophil"]["validation"] == 1


def test_every_label_keeps_a_training_image_even_with_large_held_out_fractions():
    labels = [label for label in "abcdefgh" for _ in range(2)] + ["z"] * 3
    keys = [f"image{index:02d}" for index in range(len(labels))]
    for seed in range(5):
        result = split.split_dataset(keys, labels, 0.45, 0.45, seed=seed)
        label_of = dict(zip(keys, labels))
        assert {label_of[key] for key in result.train} == set("abcdefghz")
        assert {label_of[key] for key in result.validation} == set("abcdefghz")
        assert [label_of[key] for key in result.test] == ["z"]  # only "z" has three images to share


def test_single_labels_are_stratified_per_label():
    labels = ["normal"] * 80 + ["mild"] * 15 + ["severe"] * 5
    keys = [f"image{index:03d}.png" for index in range(len(labels))]
    result = split.split_dataset(keys, labels, 0.2, seed=3)
    label_of = dict(zip(keys, labels))
    counts = collections.Counter(label_of[key] for key in result.validation)
    assert counts == {"normal": 16, "mild": 3, "severe": 1}
    assert result.stratified_by == "label" and result.grouped_by is None


def test_a_group_never_straddles_two_splits():
    keys, labels, patients = _group_case(groups=30)
    patient_of = dict(zip(keys, patients))
    for seed in range(10):
        result = split.split_dataset(keys, labels, 0.2, 0.2, seed=seed, groups=patients, group_name="patient_id")
        splits_of_patient = collections.defaultdict(set)
        for name in ("train", "validation", "test"):
            for key in getattr(result, name):
                splits_of_patient[patient_of[key]].add(name)
        assert all(len(names) == 1 for names in splits_of_patient.values()), splits_of_patient
        assert len(splits_of_patient) == 30
        assert all(getattr(result, name) for name in ("train", "validation", "test"))
        assert 0.08 * len(keys) <= len(result.validation) <= 0.4 * len(keys)
    assert result.grouped_by == "patient_id" and "per group" in result.stratified_by


def test_groups_work_with_class_presence_labels_too():
    keys, labels = _detection_case(count=90)
    groups = [f"slide{index % 30}" for index in range(90)]
    result = split.split_dataset(keys, labels, 0.2, seed=2, groups=groups)
    slides_in_validation = {groups[keys.index(key)] for key in result.validation}
    slides_in_training = {groups[keys.index(key)] for key in result.train}
    assert slides_in_validation and not slides_in_validation & slides_in_training


def test_save_and_load_round_trip(tmp_path):
    keys, labels, patients = _group_case()
    result = split.split_dataset(keys, labels, 0.2, 0.1, seed=5, groups=patients, group_name="patient_id")
    path = result.save(tmp_path / "run" / "split.json")
    assert path == tmp_path / "run" / "split.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["seed"] == 5 and record["counts"]["validation"] == len(result.validation)
    assert split.load_split(path) == result
    assert split.load_split(tmp_path / "run") == result  # the folder works too


def test_save_keeps_non_ascii_names(tmp_path):
    keys = ["Zelle_µm_1", "Zelle_µm_2", "célula_3", "célula_4"]
    result = split.split_dataset(keys, ["α", "α", "β", "β"], 0.5, seed=0)
    path = result.save(tmp_path / "split.json")
    assert "célula" in path.read_text(encoding="utf-8")
    assert split.load_split(path) == result


@pytest.mark.parametrize("validation_fraction, test_fraction, field", [
    (1.0, 0.0, "validation_fraction"), (-0.1, 0.0, "validation_fraction"), (0.2, 1.5, "test_fraction"),
    (float("nan"), 0.0, "validation_fraction"), ("0.2", 0.0, "validation_fraction"), (0.6, 0.4, "leaves no training"),
])
def test_fractions_out_of_range_are_config_errors(validation_fraction, test_fraction, field):
    keys, labels = _detection_case(count=10)
    with pytest.raises(errors.ConfigError, match=field):
        split.split_dataset(keys, labels, validation_fraction, test_fraction)


def test_bad_keys_labels_and_groups_are_dataset_errors():
    with pytest.raises(errors.DatasetError, match="a.png appear more than once"):
        split.split_dataset(["a.png", "b.png", "a.png"], ["x", "y", "x"], 0.2)
    with pytest.raises(errors.DatasetError, match="labels: 2 values for 3 keys"):
        split.split_dataset(["a", "b", "c"], ["x", "y"], 0.2)
    with pytest.raises(errors.DatasetError, match="groups: 1 values for 3 keys"):
        split.split_dataset(["a", "b", "c"], ["x", "y", "z"], 0.2, groups=["p1"])
    with pytest.raises(errors.DatasetError, match="labels: a has"):
        split.split_dataset(["a", "b"], [{"RBC"}, "RBC"], 0.2)
    with pytest.raises(errors.DatasetError, match="labels: b has no label"):
        split.split_dataset(["a", "b"], ["x", None], 0.2)


@pytest.mark.parametrize("content, problem", [
    ("", "not valid JSON"), ("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"),
    ('{"train": ["a"], "validation": [], "test": []}', "'seed'"),
    ('{"train": ["a"], "validation": ["a"], "test": [], "seed": 1, "validation_fraction": 0.5, '
     '"test_fraction": 0, "stratified_by": "label"}', "appear in two splits"),
    ('{"train": "a", "validation": [], "test": []}', "'train'"),
])
def test_damaged_records_are_dataset_errors_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "split.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(errors.DatasetError, match=problem) as caught:
        split.load_split(path)
    assert str(path) in str(caught.value)


def test_missing_record_is_a_dataset_error(tmp_path):
    with pytest.raises(errors.DatasetError, match="missing.json"):
        split.load_split(tmp_path / "missing.json")
