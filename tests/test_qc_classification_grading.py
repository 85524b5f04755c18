"""Classification and grading QC equal scikit-learn's figures; CSVs are joined by file name."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics

from helpers import errors
from helpers.qc import classification, grading
from tests.conftest import REPOSITORY_ROOT

CLASSES = ["Basophil", "Eosinophil", "Lymphozyt", "Neutrophil", "Monozyt ä"]


def write_csv(path, header, rows, bom=False):
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def classification_case(seed, count=80):
    """filename -> true label, predicted label, softmax scores (one class never predicted)."""
    rng = np.random.default_rng(seed)
    names = [f"zelle_{index:03d}_ü.png" for index in range(count)]
    truth = {name: CLASSES[int(rng.integers(0, 5))] for name in names}
    logits = {name: rng.normal(0, 1, 5) + 2.5 * np.eye(5)[CLASSES.index(truth[name])] for name in names}
    logits = {name: np.where(np.arange(5) == 0, value - 10, value) for name, value in logits.items()}  # no Basophil
    scores = {name: dict(zip(CLASSES, np.exp(value) / np.exp(value).sum())) for name, value in logits.items()}
    predicted = {name: max(scores[name], key=scores[name].get) for name in names}
    return truth, predicted, scores


def write_classification_csvs(tmp_path, seed=0):
    truth, predicted, scores = classification_case(seed)
    rng = np.random.default_rng(seed + 100)
    names = list(truth)
    labels_path = write_csv(tmp_path / "labels.csv", ["patient", "label", "filename"],
                            [[f"p{index}", truth[name], name] for index, name in enumerate(rng.permutation(names))],
                            bom=True)
    predictions_path = write_csv(tmp_path / "predictions.csv", ["filename", "label"] + [f"score_{c}" for c in CLASSES],
                                 [[name, predicted[name]] + [repr(float(scores[name][c])) for c in CLASSES]
                                  for name in rng.permutation(names)])
    return labels_path, predictions_path, truth, predicted, scores


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_equals_sklearn_after_joining_shuffled_files(tmp_path, seed):
    labels_path, predictions_path, truth, predicted, scores = write_classification_csvs(tmp_path, seed)
    evaluation = classification.evaluate_classification(
        classification.read_label_csv(labels_path), classification.read_label_csv(predictions_path),
        classification.read_score_csv(predictions_path))
    names = sorted(truth)
    y_true, y_pred = [truth[name] for name in names], [predicted[name] for name in names]
    assert evaluation.classes == sorted(CLASSES)
    assert evaluation.accuracy == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert evaluation.balanced_accuracy == pytest.approx(metrics.balanced_accuracy_score(y_true, y_pred))
    assert evaluation.macro_f1 == pytest.approx(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert evaluation.weighted_f1 == pytest.approx(metrics.f1_score(y_true, y_pred, average="weighted",
                                                                    zero_division=0))
    assert evaluation.macro_precision == pytest.approx(metrics.precision_score(y_true, y_pred, average="macro",
                                                                               zero_division=0))
    assert evaluation.weighted_recall == pytest.approx(metrics.recall_score(y_true, y_pred, average="weighted"))
    assert evaluation.confusion_matrix == metrics.confusion_matrix(y_true, y_pred, labels=sorted(CLASSES)).tolist()
    precision, recall, f1, support = metrics.precision_recall_fscore_support(y_true, y_pred, labels=sorted(CLASSES),
                                                                             zero_division=0)
    for index, name in enumerate(sorted(CLASSES)):
        assert evaluation.per_class[name]["precision"] == pytest.approx(precision[index])
        assert evaluation.per_class[name]["recall"] == pytest.approx(recall[index])
        assert evaluation.per_class[name]["f1"] == pytest.approx(f1[index])
        assert evaluation.per_class[name]["support"] == support[index]
    assert evaluation.per_class["Basophil"]["precision"] == 0.0  # never predicted: zero_division=0
    score_matrix = np.array([[scores[name][c] for c in sorted(CLASSES)] for name in names])
    assert evaluation.roc_auc_ovr == pytest.approx(metrics.roc_auc_score(y_true, score_matrix, multi_class="ovr",
                                                                          labels=sorted(CLASSES)), abs=1e-9)
    rows = np.asarray(evaluation.confusion_matrix_normalised)
    assert rows.sum(axis=1) == pytest.approx(np.ones(5))


def test_classification_without_scores_has_no_auc_and_binary_auc():
    truth, predicted, scores = classification_case(4)
    assert classification.evaluate_classification(truth, predicted).roc_auc_ovr is None
    binary_truth = {name: "krank" if label in CLASSES[:2] else "gesund" for name, label in truth.items()}
    binary_scores = {name: {"krank": score["Basophil"] + score["Eosinophil"],
                            "gesund": 1 - score["Basophil"] - score["Eosinophil"]} for name, score in scores.items()}
    binary_predicted = {name: max(value, key=value.get) for name, value in binary_scores.items()}
    evaluation = classification.evaluate_classification(binary_truth, binary_predicted, binary_scores)
    names = sorted(truth)
    assert evaluation.roc_auc_ovr == pytest.approx(metrics.roc_auc_score(
        [binary_truth[name] == "krank" for name in names], [binary_scores[name]["krank"] for name in names]))


def test_scores_for_only_some_classes_give_no_auc():
    truth, predicted, scores = classification_case(5)
    partial = {name: {c: value for c, value in score.items() if c != "Lymphozyt"} for name, score in scores.items()}
    assert classification.evaluate_classification(truth, predicted, partial).roc_auc_ovr is None


def test_filename_in_one_file_only_is_named(tmp_path):
    labels_path, predictions_path, truth, _, _ = write_classification_csvs(tmp_path)
    rows = list(csv.reader(predictions_path.open(encoding="utf-8")))
    dropped = rows.pop(7)[0]
    write_csv(predictions_path, rows[0], rows[1:])
    with pytest.raises(errors.DatasetError, match=dropped) as caught:
        classification.evaluate_classification(classification.read_label_csv(labels_path),
                                               classification.read_label_csv(predictions_path),
                                               labels_source=str(labels_path), predictions_source=str(predictions_path))
    assert str(labels_path) in str(caught.value)


def test_duplicate_and_missing_columns_are_errors(tmp_path):
    path = write_csv(tmp_path / "labels.csv", ["filename", "label"], [["a.png", "x"], ["b.png", "y"], ["a.png", "x"]])
    with pytest.raises(errors.DatasetError, match=r"line 4: 'a.png' is listed again \(first on line 2\)"):
        classification.read_label_csv(path)
    path = write_csv(tmp_path / "no_label.csv", ["filename", "class"], [["a.png", "x"]])
    with pytest.raises(errors.DatasetError, match="missing column"):
        classification.read_label_csv(path)
    path = write_csv(tmp_path / "scores.csv", ["filename", "label", "score_x"], [["a.png", "x", "hoch"]])
    with pytest.raises(errors.DatasetError, match="line 2: column 'score_x'"):
        classification.read_score_csv(path)


def test_classification_plots(tmp_path):
    truth, predicted, scores = classification_case(1)
    evaluation = classification.evaluate_classification(truth, predicted, scores)
    for plot in (classification.plot_confusion_matrix, classification.plot_roc_curves):
        assert plot(evaluation, tmp_path / f"{plot.__name__}.png").read_bytes()[:4] == b"\x89PNG"
    without = classification.evaluate_classification(truth, predicted)
    assert classification.plot_roc_curves(without, tmp_path / "none.png").is_file()


# ---------------------------------------------------------------- grading


def grading_case(seed, count=120, grades=5):
    """Imbalanced true grades (mostly 0), predictions off by one now and then, per-grade softmax scores."""
    rng = np.random.default_rng(seed)
    names = [f"auge_{index:03d}.jpg" for index in range(count)]
    truth = {name: int(rng.choice(grades, p=[0.6, 0.15, 0.12, 0.08, 0.05][:grades] / np.sum(
        [0.6, 0.15, 0.12, 0.08, 0.05][:grades]))) for name in names}
    scores = {}
    for name in names:
        logits = rng.normal(0, 1.0, grades) - 0.8 * np.abs(np.arange(grades) - truth[name])
        scores[name] = dict(enumerate(np.exp(logits) / np.exp(logits).sum()))
    predicted = {name: int(max(scores[name], key=scores[name].get)) for name in names}
    return truth, predicted, scores


@pytest.mark.parametrize("seed", [0, 1])
def test_grading_equals_sklearn(seed):
    truth, predicted, scores = grading_case(seed)
    evaluation = grading.evaluate_grading(truth, predicted, num_grades=5, referable_threshold=2, scores=scores)
    names = sorted(truth)
    y_true, y_pred = np.array([truth[n] for n in names]), np.array([predicted[n] for n in names])
    grades = list(range(5))
    assert evaluation.quadratic_kappa == pytest.approx(metrics.cohen_kappa_score(y_true, y_pred, labels=grades,
                                                                                 weights="quadratic"))
    assert evaluation.linear_kappa == pytest.approx(metrics.cohen_kappa_score(y_true, y_pred, labels=grades,
                                                                              weights="linear"))
    assert evaluation.accuracy == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert evaluation.mean_absolute_error == pytest.approx(metrics.mean_absolute_error(y_true, y_pred))
    assert evaluation.confusion_matrix == metrics.confusion_matrix(y_true, y_pred, labels=grades).tolist()
    for grade in grades:
        assert evaluation.per_grade[grade]["sensitivity"] == pytest.approx(
            metrics.recall_score(y_true == grade, y_pred == grade, zero_division=0))
        assert evaluation.per_grade[grade]["specificity"] == pytest.approx(
            metrics.recall_score(y_true != grade, y_pred != grade, zero_division=0))
        assert evaluation.per_grade[grade]["support"] == int(np.sum(y_true == grade))
    referable = evaluation.referable
    assert referable["sensitivity"] == pytest.approx(metrics.recall_score(y_true >= 2, y_pred >= 2))
    assert referable["specificity"] == pytest.approx(metrics.recall_score(y_true < 2, y_pred < 2))
    probability = [scores[n][2] + scores[n][3] + scores[n][4] for n in names]
    assert referable["roc_auc"] == pytest.approx(metrics.roc_auc_score(y_true >= 2, probability))
    assert referable["threshold"] == 2 and 0 < referable["roc_auc"] < 1


def test_grading_with_an_absent_grade_keeps_a_k_by_k_matrix():
    truth = {"a": 0, "b": 0, "c": 1, "d": 3}
    predicted = {"a": 0, "b": 1, "c": 1, "d": 4}
    evaluation = grading.evaluate_grading(truth, predicted, num_grades=5)
    assert np.asarray(evaluation.confusion_matrix).shape == (5, 5)
    assert evaluation.per_grade[2]["support"] == 0 and evaluation.referable["roc_auc"] is None
    assert evaluation.quadratic_kappa == pytest.approx(metrics.cohen_kappa_score(
        [0, 0, 1, 3], [0, 1, 1, 4], labels=range(5), weights="quadratic"))
    assert evaluation.to_json_dict()["per_grade"]["2"]["support"] == 0


def test_grades_out_of_range_name_the_file(tmp_path):
    path = write_csv(tmp_path / "grades.csv", ["filename", "grade", "patient"], [["a.jpg", "2", "p1"],
                                                                                 ["b.jpg", "5", "p1"]])
    with pytest.raises(errors.DatasetError, match=r"grades.csv: line 3: grade '5' of 'b.jpg'"):
        grading.read_grade_csv(path, num_grades=5)
    assert grading.read_grade_csv(path, num_grades=6) == {"a.jpg": 2, "b.jpg": 5}
    with pytest.raises(errors.DatasetError, match="predictions.*'x'"):
        grading.evaluate_grading({"x": 1}, {"x": 7}, num_grades=5)
    with pytest.raises(errors.ConfigError, match="referable_threshold"):
        grading.evaluate_grading({"x": 1}, {"x": 1}, num_grades=5, referable_threshold=5)


def test_grading_plots(tmp_path):
    truth, predicted, scores = grading_case(2)
    evaluation = grading.evaluate_grading(truth, predicted, scores=scores)
    for plot in (grading.plot_confusion_matrix, grading.plot_roc_curves):
        assert plot(evaluation, tmp_path / f"{plot.__name__}.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- the command


def run_command(*arguments):
    return subprocess.run([sys.executable, "-m", "helpers.qc", *arguments], cwd=REPOSITORY_ROOT,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def test_classification_command_json_equals_the_function(tmp_path):
    labels_path, predictions_path, *_ = write_classification_csvs(tmp_path, seed=3)
    completed = run_command("classification", "--labels", str(labels_path), "--predictions", str(predictions_path),
                            "--json")
    assert completed.returncode == 0, completed.stderr
    expected = classification.evaluate_classification(
        classification.read_label_csv(labels_path), classification.read_label_csv(predictions_path),
        classification.read_score_csv(predictions_path)).to_json_dict()
    assert json.loads(completed.stdout) == expected
    table = run_command("classification", "--labels", str(labels_path), "--predictions", str(predictions_path))
    assert table.returncode == 0 and "balanced accuracy" in table.stdout and "Monozyt ä" in table.stdout


def test_grading_command_json_equals_the_function_and_errors_exit_2(tmp_path):
    truth, predicted, scores = grading_case(3)
    labels_path = write_csv(tmp_path / "labels.csv", ["filename", "grade", "patient"],
                            [[name, grade, "p"] for name, grade in reversed(truth.items())])
    predictions_path = write_csv(tmp_path / "predictions.csv", ["filename", "grade"] + [f"score_{g}" for g in range(5)],
                                 [[name, grade] + [repr(float(scores[name][g])) for g in range(5)]
                                  for name, grade in predicted.items()])
    completed = run_command("grading", "--labels", str(labels_path), "--predictions", str(predictions_path),
                            "--referable-threshold", "3", "--json")
    assert completed.returncode == 0, completed.stderr
    printed = json.loads(completed.stdout)
    expected = grading.evaluate_grading(truth, predicted, num_grades=5, referable_threshold=3,
                                        scores=scores).to_json_dict()
    assert printed == expected
    assert printed["referable"]["threshold"] == 3 and printed["referable"]["roc_auc"] is not None
    failed = run_command("grading", "--labels", str(labels_path), "--predictions", str(predictions_path),
                         "--num-grades", "3", "--json")
    assert failed.returncode == 2 and failed.stdout == "" and len(failed.stderr.strip().splitlines()) == 1
    assert "labels.csv" in failed.stderr
