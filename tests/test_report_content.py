"""What the training and QC PDFs say, read back with pypdf: built from small fixtures, no training.

Every report leads with its answer on page 1, puts warnings (quick run, too few images, a class the
model never saw) next to it, and ends with the glossary and the appendix (hardware, settings).
"""

import dataclasses
import time
import types

import numpy as np
import pypdf
import pytest

from helpers import config as config_module
from helpers import history, run_report, runs
from helpers.classification import reports as classification_reports
from helpers.classification.config import ClassificationConfig
from helpers.detection import dataset as detection_dataset
from helpers import prediction_formats
from helpers.detection import demo_data, quality
from helpers.detection import reports as detection_reports
from helpers.detection import train as detection_train
from helpers.detection.config import DetectionConfig
from helpers.grading import reports as grading_reports
from helpers.grading.config import GradingConfig
from helpers.qc import classification as classification_qc
from helpers.qc import detection as detection_qc
from helpers.qc import grading as grading_qc

Namespace = types.SimpleNamespace


def pages_of(path) -> list[str]:
    """Each page's text with line breaks made spaces (pypdf breaks lines where the PDF wraps them)."""
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(str(path)).pages]


def position(text: str, fragment: str) -> int:
    assert fragment in text, fragment
    return text.index(fragment)


@pytest.fixture(scope="module")
def detection_run(tmp_path_factory):
    """A quick-preset detection run folder over 5 synthetic images, its dataset and config (nothing trained)."""
    folder = tmp_path_factory.mktemp("detection_report")
    data = demo_data.make_detection_demo(folder / "data", number_of_images=5, image_size=(160, 128))
    dataset = detection_dataset.load_detection_dataset(data / "images", data / "annotations", progress=False)
    config = config_module.config_from_form(DetectionConfig, "quick", images_dir=str(data / "images"),
                                            annotations_dir=str(data / "annotations"),
                                            model_path=str(folder / "models"), model_name="report_run")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    return run, config, dataset


def detection_result(run, config, dataset, trained_classes):
    """A QC result whose detections are the annotated boxes (so every one is found), no plots."""
    run.write_label_map(trained_classes)
    ground_truth = {item.image_path.name: dataclasses.replace(item.annotation, filename=item.image_path.name,
                                                              objects=dataset.usable_objects(item))
                    for item in dataset.items}
    predictions = [prediction_formats.Detection(name, obj.name, 0.9, obj.xmin, obj.ymin, obj.xmax, obj.ymax)
                   for name, annotation in ground_truth.items() for obj in annotation.objects
                   if obj.name in trained_classes]
    evaluation = detection_qc.evaluate_detection(ground_truth, predictions, classes=trained_classes,
                                                 score_threshold=config.score_threshold)
    (run.qc / "test").mkdir(parents=True, exist_ok=True)
    return quality.QualityResult(run=run, config=config, evaluation=evaluation, source="a synthetic test folder",
                                 ground_truth=ground_truth,
                                 image_paths={item.image_path.name: item.image_path for item in dataset.items},
                                 predictions=predictions, output_dir=run.qc / "test")


def test_detection_qc_report_leads_with_the_answer_and_ends_with_glossary_and_appendix(detection_run):
    run, config, dataset = detection_run
    result = detection_result(run, config, dataset, list(dataset.classes))
    annotated = sum(len(annotation.objects) for annotation in result.ground_truth.values())
    pages = pages_of(detection_reports.qc_report(result))
    first, text = pages[0], " ".join(pages)
    assert f"At score ≥ {config.score_threshold:g}: {annotated} of {annotated} annotated objects found, 0 false " \
           f"detections; counts within ±1 per image in 5 of 5 images" in first
    assert config_module.quick_run_notice(config)[:40] in first  # a quick run says so on page 1
    assert "Only 5 test images: these numbers can change a lot with other images." in first
    assert "not in training" not in text
    results = position(text, "Counts: predicted vs annotated objects per image")
    assert results < position(text, "Glossary") < position(text, "Appendix: hardware and software")
    assert position(text, "Appendix: settings") < position(text, "# DetectionConfig")
    assert "ddof" not in text and "101-point" not in text and "area all" not in text  # jargon: glossary only


def test_detection_qc_report_names_a_class_the_model_never_trained_on(detection_run):
    run, config, dataset = detection_run
    unseen = sorted(dataset.classes)[-1]
    result = detection_result(run, config, dataset, [name for name in dataset.classes if name != unseen])
    first = pages_of(detection_reports.qc_report(result))[0]
    assert (f"Class {unseen} is in the test annotations but not in training: the model cannot find it; "
            f"it lowers mAP") in first


def test_detection_training_report_leads_with_the_kept_epoch(detection_run):
    run, config, dataset = detection_run
    for epoch in range(1, 5):  # validated every second epoch, as validation_interval allows
        row = {"epoch": epoch, "train_total_loss": 2.0 / epoch, "train_class_loss": 1.0 / epoch,
               "train_box_loss": 0.01 / epoch}
        if epoch % 2 == 0:
            row.update(validation_loss=1.5 / epoch, validation_map50=0.2 * epoch, validation_map50_95=0.1 * epoch)
        history.append_history(run.history_path, row, detection_train.HISTORY_COLUMNS)
    items = [item.stem for item in dataset.items]
    session = Namespace(config=dataclasses.replace(config, augmentation_factor=3), run=run, dataset=dataset,
                        split=Namespace(seed=1, train=items[:4], validation=items[4:]), augmentation=None,
                        pretrained=None, started_at=time.time() - 75, pixel_scale=None,
                        training=Namespace(best_epoch=4, strategy="Training on the CPU (2 cores); no GPU was found."))
    pages = pages_of(detection_reports.training_report(session))
    first, text = pages[0], " ".join(pages)
    assert ("Kept epoch 4 of 4 (highest validation mAP50-95): on the 1 validation images mAP50 = 0.800 and "
            "mAP50-95 = 0.400") in first
    assert "This was a quick run" in first
    assert position(text, "Training curves") < position(text, "Methods (ready to paste)") \
        < position(text, "Appendix: hardware and software") < position(text, "# DetectionConfig")
    accelerator = text[position(text, "Accelerator used"):][:60]
    assert "CPU (" in accelerator or "GPU: " in accelerator
    methods = text[position(text, "Methods (ready to paste)"):position(text, "Glossary")]
    for augmentation in ("2 augmented copies", "vertical flips", "rotation", "brightness", "gamma", "Gaussian blur",
                         "Gaussian noise", "flipped horizontally at random", "scale jitter"):
        assert augmentation in methods, augmentation
    assert (run.plots / "training_curves.png").is_file()


def classification_result(tmp_path, images: int, preset: str = "quick"):
    """A classification QC result of ``images`` images: A always right, B half taken for C, plus a run folder."""
    config = config_module.config_from_form(ClassificationConfig, preset, images_dir=str(tmp_path / "images"),
                                            model_path=str(tmp_path / "models"), model_name="classifier")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    run.write_label_map(["A", "B", "C"])
    truth = {f"{index}.png": "ABC"[index % 3] for index in range(images)}
    predicted = {name: ("C" if label == "B" and index % 2 else label)
                 for index, (name, label) in enumerate(truth.items())}
    evaluation = classification_qc.evaluate_classification(truth, predicted)
    plots = {name: tmp_path / f"{name}.png" for name in ("confusion_matrix", "roc_curves", "mistakes")}
    return Namespace(run=run, config=config, evaluation=evaluation, source="the test folder", plots=plots,
                     items={"0.png": Namespace(path=tmp_path / "images" / "0.png")}, gradcam_figures=[])


def test_classification_qc_report_answer_and_sample_size_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(run_report.report.Report, "figure", lambda self, *arguments, **keywords: None)  # no plots
    result = classification_result(tmp_path, images=12)
    matrix = np.asarray(result.evaluation.confusion_matrix)
    correct, confused = int(np.trace(matrix)), int(matrix[1, 2])
    pages = pages_of(classification_reports.qc_report(result))
    assert (f"{correct} of 12 test images correct ({100 * correct / 12:.0f} %); balanced accuracy") in pages[0]
    assert f"Most confused: B taken for C ({confused} times)." in pages[0]
    assert "Only 12 test images" in pages[0]
    text = " ".join(pages)
    assert position(text, "Per class") < position(text, "Glossary") < position(text, "# ClassificationConfig")


def test_grading_qc_report_answer(tmp_path, monkeypatch):
    monkeypatch.setattr(run_report.report.Report, "figure", lambda self, *arguments, **keywords: None)
    config = config_module.config_from_form(GradingConfig, "default", images_dir=str(tmp_path / "images"),
                                            labels_csv=str(tmp_path / "labels.csv"),
                                            model_path=str(tmp_path / "models"), model_name="grader")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    truth = {f"{index}.png": index % 5 for index in range(25)}
    predicted = {name: min(4, grade + (index % 4 == 0) + 2 * (index == 7))  # some one grade off, one three
                 for index, (name, grade) in enumerate(truth.items())}
    evaluation = grading_qc.evaluate_grading(truth, predicted)
    plots = {name: tmp_path / f"{name}.png" for name in ("confusion_matrix", "referable_roc", "largest_errors")}
    result = Namespace(run=run, config=config, evaluation=evaluation, source="the test folder", plots=plots,
                       items={"0.png": Namespace(path=tmp_path / "images" / "0.png")}, gradcam_figures=[])
    first = pages_of(grading_reports.qc_report(result))[0]
    within = grading_reports.within_one_grade(evaluation.confusion_matrix)
    assert f"Quadratic weighted kappa {evaluation.quadratic_kappa:.3f} (1 = perfect agreement, 0 = chance); " \
           f"{100 * within:.0f} % of the 25 images within one grade" in first
    assert "Only" not in first and "quick run" not in first  # 25 images, default preset: no warning box


def test_sample_size_warning_threshold():
    assert run_report.sample_size_warning(6).startswith("Only 6 test images: these numbers can change a lot")
    assert run_report.sample_size_warning(run_report.SMALL_SAMPLE_IMAGES) == ""


def test_most_confused_pair_and_no_confusion():
    assert classification_reports.most_confused(["A", "B"], [[3, 0], [5, 1]]) == "Most confused: B taken for A (5 times)."
    assert classification_reports.most_confused(["A", "B"], [[3, 0], [0, 1]]) == "No image was given a wrong class."


def test_detection_qc_report_answers_each_question_with_its_figure_and_caption(detection_run):
    run, config, dataset = detection_run
    result = detection_result(run, config, dataset, list(dataset.classes))
    plots = {"pr_curves": detection_qc.plot_pr_curves, "f1_curve": detection_qc.plot_f1_curve,
             "confusion_matrix": detection_qc.plot_confusion_matrix}
    result.plots = {name: plot(result.evaluation, result.output_dir / f"{name}.png") for name, plot in plots.items()}
    path = detection_reports.qc_report(result)
    pages = pages_of(path)
    text = " ".join(pages)
    threshold = f"{config.score_threshold:g}"
    # Every detection is an annotated box scored 0.9: F1 is 1 up to 0.9, so the best is the threshold in use.
    assert (f"All classes together: F1 1.00 at the score threshold in use ({threshold}); the best F1 is 1.00 at score "
            f"threshold {threshold} (precision 1.00, recall 1.00), chosen on these QC images (optimistic)") in text
    captions = ("the dot is where the threshold in use puts you",
                "the dashed red line is the threshold in use and the star the best F1",
                "the last column counts annotated objects the model missed, the last row counts detections where "
                "nothing was annotated")
    figure_pages = pypdf.PdfReader(str(path)).pages
    for question, caption in zip(("How precise is the model at each level of recall?", "Which score threshold?",
                                  "Which classes are confused, missed or falsely detected?"), captions):
        assert position(text, question) < position(text, caption) < position(text, "Glossary")
        page = next(index for index, page_text in enumerate(pages) if question in page_text)
        assert len(figure_pages[page].images) >= 1, question  # the figure sits on its question's page
    assert position(text, "Which classes are confused") < position(text, "Counts: predicted vs annotated")
