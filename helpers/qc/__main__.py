"""``python -m helpers.qc``: check predictions of any tool against ground truth.

    python -m helpers.qc detection --ground-truth ANNOTATIONS_DIR --predictions predictions.csv [--json]
                                   [--viewer-formats NEW_FOLDER]
    python -m helpers.qc classification --labels labels.csv --predictions predictions.csv [--json]
    python -m helpers.qc grading --labels labels.csv --predictions predictions.csv [--num-grades 5]
                                 [--referable-threshold 2] [--json]

With ``--json`` stdout holds exactly one JSON object (UTF-8) and nothing else; logs and
warnings go to stderr. Without it a readable table is printed. A problem with the user's
files or options is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any, Sequence

from helpers import errors

USER_ERROR_EXIT_CODE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers.qc",
                                     description="Quality control of detection, classification or grading predictions.")
    commands = parser.add_subparsers(dest="task", required=True, metavar="{detection,classification,grading}")
    detection = commands.add_parser("detection", help="COCO mAP (pycocotools) of boxes against PASCAL VOC files, "
                                                      "and predicted vs annotated counts per image")
    detection.add_argument("--ground-truth", required=True,
                           help="folder of PASCAL VOC .xml annotation files, or one COCO or BBBC041 .json file")
    detection.add_argument("--predictions", required=True,
                           help="CSV with columns filename,class,score,xmin,ymin,xmax,ymax (pixels)")
    detection.add_argument("--images", default=None, help="image folder, for XML files without <size>")
    detection.add_argument("--score-threshold", type=float, default=0.3,
                           help="lowest score for precision/recall/F1/TP/FP/FN, the confusion matrix and the "
                                "predicted counts (default 0.3)")
    detection.add_argument("--iou-threshold", type=float, default=0.5, help="IoU of a match for the same (default 0.5)")
    detection.add_argument("--max-detections", type=int, default=None,
                           help="detections per image and class that COCO mAP keeps (default: COCO's 100, or twice "
                                "the most annotated boxes of one class in one image when that is more)")
    detection.add_argument("--viewer-formats", default=None, metavar="NEW_FOLDER",
                           help="also write the predictions at --score-threshold for QuPath, Fiji, napari and Label "
                                "Studio into this new folder (helpers/viewer_formats.py; Label Studio's image URLs "
                                "start with the --images folder's name)")
    classification = commands.add_parser("classification", help="scikit-learn figures of one label per image")
    classification.add_argument("--labels", required=True, help="CSV with columns filename,label")
    classification.add_argument("--predictions", required=True,
                                help="CSV with columns filename,label and optional score_<class> columns")
    grading = commands.add_parser("grading", help="kappa and referable-disease figures of ordinal grades")
    grading.add_argument("--labels", required=True, help="CSV with columns filename,grade")
    grading.add_argument("--predictions", required=True,
                         help="CSV with columns filename,grade and optional score_0 ... score_<K-1> columns")
    grading.add_argument("--num-grades", type=int, default=5, help="K: grades are 0..K-1 (default 5)")
    grading.add_argument("--referable-threshold", type=int, default=2,
                         help="grade >= this is referable disease (default 2)")
    for command in (detection, classification, grading):
        command.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    return parser


def _detection(arguments: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from helpers import annotation_formats, prediction_formats
    from helpers.qc import detection

    ground_truth = annotation_formats.load_ground_truth(arguments.ground_truth, arguments.images)
    predictions = detection.match_predictions(ground_truth, prediction_formats.read_predictions_csv(arguments.predictions),
                                              source=arguments.predictions)
    evaluation = detection.evaluate_detection(ground_truth, predictions, score_threshold=arguments.score_threshold,
                                              iou_threshold=arguments.iou_threshold,
                                              max_detections=arguments.max_detections)
    if arguments.viewer_formats:
        _write_viewer_formats(arguments, ground_truth, predictions)
    return evaluation.to_json_dict(), detection.summary_table(evaluation)


def _write_viewer_formats(arguments: argparse.Namespace, ground_truth, predictions) -> None:
    """``--viewer-formats``: the kept predictions as QuPath, Fiji, napari and Label Studio files (a new folder)."""
    import pathlib

    from helpers import viewer_formats

    folder = pathlib.Path(arguments.viewer_formats)
    if folder.exists() and any(folder.iterdir()):
        raise errors.ConfigError(f"--viewer-formats: {folder} is not empty. Give a new folder; files are never "
                                 "overwritten.")
    kept = [row for row in predictions if row.score >= arguments.score_threshold]
    sizes = {name: (int(annotation.width), int(annotation.height)) for name, annotation in ground_truth.items()}
    classes = sorted({box.name for annotation in ground_truth.values() for box in annotation.objects})
    viewer_formats.write_viewer_formats(kept, sizes, folder, classes, model_version=pathlib.Path(arguments.predictions).stem,
                                        images_folder=pathlib.Path(arguments.images).name if arguments.images else "")


def _classification(arguments: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from helpers.qc import classification

    evaluation = classification.evaluate_classification(
        classification.read_label_csv(arguments.labels), classification.read_label_csv(arguments.predictions),
        scores=classification.read_score_csv(arguments.predictions) or None,
        labels_source=arguments.labels, predictions_source=arguments.predictions)
    return evaluation.to_json_dict(), classification.summary_table(evaluation)


def _grading(arguments: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from helpers.qc import grading

    if arguments.num_grades < 2:  # before reading, so the grade range in file errors makes sense
        raise errors.ConfigError(f"--num-grades: {arguments.num_grades} must be >= 2 (5 for diabetic retinopathy).")
    evaluation = grading.evaluate_grading(
        grading.read_grade_csv(arguments.labels, arguments.num_grades),
        grading.read_grade_csv(arguments.predictions, arguments.num_grades),
        num_grades=arguments.num_grades, referable_threshold=arguments.referable_threshold,
        scores=grading.read_grade_scores(arguments.predictions, arguments.num_grades) or None,
        labels_source=arguments.labels, predictions_source=arguments.predictions)
    return evaluation.to_json_dict(), grading.summary_table(evaluation)


TASKS = {"detection": _detection, "classification": _classification, "grading": _grading}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one QC command; the exit code (0 ok, 2 user error)."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        # Libraries that print (pycocotools does) must not spoil the JSON on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            result, table = TASKS[arguments.task](arguments)
    except errors.HelpersError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    sys.stdout.reconfigure(encoding="utf-8")
    if arguments.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
