"""Prediction at scale (``helpers.prediction_jobs``, ``dl4cells TASK predict --workers/--scheduler``).

One tiny classifier (MobileNetV3-Small at 32 px, untrained: equality needs no good model) exported as training
exports it, 12 synthetic images in one subfolder per class, and one 2-process local Dask cluster (127.0.0.1,
no dashboard) shared by the tests. Checks: the cluster's merged predictions.csv equals the single-process one
(same rows in the same order, probabilities within 1e-6) and each worker process loads the model once; a job
stopped midway and run again predicts each image exactly once, on the cluster (stopped after k images) and in
this process (a work item that raises, as a kill does); glob and list-file inputs; one-line errors for an empty
glob, a list naming a missing image, an output folder inside the images folder or holding another job; the
command line on the cluster. The images folder is never written.
"""

import csv
import json
import dataclasses
import functools
import os
import pathlib

import pytest

from helpers import cli, errors, prediction_jobs, runs

pytestmark = pytest.mark.slow  # one cluster of two TensorFlow processes (about 30 s in all on 2 busy cores)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A run folder with an exported (untrained) classifier, its 12 demo images and their single-process CSV."""
    from helpers import config as config_module
    from helpers.classification import demo_data, predict
    from helpers.classification import model as model_module
    from helpers.classification.config import ClassificationConfig

    tmp_path = tmp_path_factory.mktemp("prediction_jobs")
    data = demo_data.make_classification_demo(tmp_path / "data", images_per_class=4, image_size=40)
    config = config_module.config_from_form(ClassificationConfig, "quick", images_dir=str(data),
                                            model_path=str(tmp_path / "models"), model_name="cells", image_size=32)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    classes = sorted(demo_data.CLASSIFICATION_CLASSES)
    predict.export_model(model_module.build_classifier("mobilenetv3small", len(classes), 32), classes, run)
    single = predict.predict_folder(run.root, data, tmp_path / "single")
    return {"run": run, "data": data, "single": read_csv(single.csv_path), "tmp": tmp_path}


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, on 127.0.0.1 without a dashboard (what ``--workers 2`` starts)."""
    with prediction_jobs.local_cluster(2) as local_cluster:
        yield local_cluster


def read_csv(path: pathlib.Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def assert_same_predictions(rows: list[list[str]], expected: list[list[str]]) -> None:
    """Same header, file names and labels in the same order; every probability within 1e-6 (6-decimal text)."""
    assert rows[0] == expected[0]
    assert [row[:2] for row in rows] == [row[:2] for row in expected]
    for row, expected_row in zip(rows[1:], expected[1:]):
        assert [float(value) for value in row[2:]] == pytest.approx([float(value) for value in expected_row[2:]],
                                                                    abs=1.01e-6)


def folder_snapshot(folder: pathlib.Path) -> dict[str, int]:
    return {path.relative_to(folder).as_posix(): path.stat().st_mtime_ns for path in folder.rglob("*")}


# Wrappers the workers unpickle by reference (this module is importable there: the workers get the test's sys.path).
def logged_load(load, log_path: str):
    """``load()``, recording this process's id in ``log_path`` (one line per load)."""
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    return load()


def logged_predict(predict, log_path: str, model, paths, fail_on: str = ""):
    """``predict(model, paths)``, recording each file predicted; raises (as a killed job stops) if ``fail_on`` is among them."""
    if fail_on in {path.name for path in paths}:
        raise RuntimeError(f"simulated kill at {fail_on}")
    outcomes = predict(model, paths)
    with open(log_path, "a", encoding="utf-8") as handle:
        handle.writelines(f"{path.name}\n" for path in paths)
    return outcomes


def logging_predictor(run: runs.RunFolder, folder: pathlib.Path, fail_on: str = "") -> tuple[prediction_jobs.TaskPredictor, pathlib.Path, pathlib.Path]:
    """The run's predictor recording loads and predicted files; (predictor, loads log, predictions log)."""
    from helpers.classification import workflow

    predictor = workflow.prediction_job(str(run.root))
    loads, predicted = folder / "loads.log", folder / "predicted.log"
    return dataclasses.replace(predictor, load=functools.partial(logged_load, predictor.load, str(loads)),
                               predict=functools.partial(logged_predict, predictor.predict, str(predicted),
                                                         fail_on=fail_on)), loads, predicted


def log_lines(path: pathlib.Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def test_two_workers_give_the_single_process_predictions(classifier, cluster, tmp_path):
    before = folder_snapshot(classifier["data"])
    predictor, loads, _ = logging_predictor(classifier["run"], tmp_path)
    result = prediction_jobs.run_job(predictor, str(classifier["data"]), tmp_path / "out", chunk_size=2,
                                     scheduler=cluster.scheduler_address, progress=False)
    assert_same_predictions(read_csv(result.csv_path), classifier["single"])
    assert (result.predicted, result.resumed, result.images, result.unreadable) == (12, 0, 12, [])
    assert len(list((tmp_path / "out" / "per_image").rglob("*.json"))) == 12
    processes = log_lines(loads)
    assert 1 <= len(processes) <= 2 and len(set(processes)) == len(processes)  # one model load per worker process
    assert folder_snapshot(classifier["data"]) == before  # the images folder is only read


def test_a_stopped_job_continues_and_predicts_each_image_once(classifier, cluster, tmp_path):
    predictor, _, predicted = logging_predictor(classifier["run"], tmp_path)
    output = tmp_path / "out"
    first = prediction_jobs.run_job(predictor, str(classifier["data"]), output, chunk_size=2, stop_after=5,
                                    scheduler=cluster.scheduler_address, progress=False)
    assert first.predicted == 5 and len(read_csv(first.csv_path)) == 1 + 5
    written = {path: path.stat().st_mtime_ns for path in (output / "per_image").rglob("*.json")}
    second = prediction_jobs.run_job(predictor, str(classifier["data"]), output, chunk_size=2,
                                     scheduler=cluster.scheduler_address, progress=False)
    assert (second.predicted, second.resumed) == (7, 5)
    assert sorted(log_lines(predicted)) == sorted(row[0].split("/")[-1] for row in classifier["single"][1:])
    assert all(path.stat().st_mtime_ns == time for path, time in written.items())  # the first 5 not rewritten
    assert_same_predictions(read_csv(second.csv_path), classifier["single"])


def test_a_killed_job_in_this_process_continues_where_it_stopped(classifier, tmp_path):
    names = [row[0] for row in classifier["single"][1:]]
    victim = names[6].split("/")[-1]
    failing, _, predicted = logging_predictor(classifier["run"], tmp_path, fail_on=victim)
    with pytest.raises(RuntimeError, match="simulated kill"):
        prediction_jobs.run_job(failing, str(classifier["data"]), tmp_path / "out", chunk_size=3, progress=False)
    assert len(log_lines(predicted)) == 6  # the two work items before the one holding the victim
    resumed = dataclasses.replace(failing, predict=functools.partial(logged_predict, failing.predict.args[0],
                                                                     str(predicted)))
    result = prediction_jobs.run_job(resumed, str(classifier["data"]), tmp_path / "out", chunk_size=3, progress=False)
    assert (result.predicted, result.resumed) == (6, 6)
    assert sorted(log_lines(predicted)) == sorted(name.split("/")[-1] for name in names)
    assert_same_predictions(read_csv(result.csv_path), classifier["single"])


def test_glob_and_list_file_inputs(classifier, tmp_path):
    from helpers.classification import workflow

    predictor, data = workflow.prediction_job(str(classifier["run"].root)), classifier["data"]
    by_glob = prediction_jobs.run_job(predictor, f"{data}/*/*.png", tmp_path / "glob", progress=False)
    assert_same_predictions(read_csv(by_glob.csv_path), classifier["single"])
    chosen = [row[0] for row in classifier["single"][1:4]]
    list_file = data.parent / "to_predict.txt"  # beside the images folder: entries relative to the list's folder
    list_file.write_text("# three images\n" + "".join(f"{data.name}/{name}\n" for name in reversed(chosen)) + "\n")
    by_list = prediction_jobs.run_job(predictor, str(list_file), tmp_path / "list", progress=False)
    expected = [classifier["single"][0]] + [[f"{data.name}/{row[0]}", *row[1:]] for row in classifier["single"][1:4]]
    assert_same_predictions(read_csv(by_list.csv_path), expected)
    (data.parent / "lists").mkdir()
    (data.parent / "lists" / "up.txt").write_text(f"../{data.name}/{chosen[0]}\n")  # a name climbing out of its folder
    by_climbing_list = prediction_jobs.run_job(predictor, str(data.parent / "lists" / "up.txt"), tmp_path / "up",
                                               progress=False)
    assert read_csv(by_climbing_list.csv_path)[1][0] == f"../{data.name}/{chosen[0]}"
    [result_file] = (tmp_path / "up" / "per_image").rglob("*.json")  # inside per_image, not beside it
    assert result_file.relative_to(tmp_path / "up" / "per_image").parts[0] == "%2E%2E"
    assert not (tmp_path / "up" / data.name).exists()


def test_inputs_and_outputs_refused_with_one_line(classifier, tmp_path):
    predictor = prediction_jobs.TaskPredictor("model", list, list, ("filename", "label"))
    data = classifier["data"]
    with pytest.raises(errors.DatasetError, match=r"matches no image") as empty:
        prediction_jobs.run_job(predictor, f"{data}/*/*.tif", tmp_path / "out", progress=False)
    list_file = tmp_path / "list.txt"
    list_file.write_text(f"{next(data.rglob('*.png'))}\nmissing/cell_7.png\n")
    with pytest.raises(errors.DatasetError, match=r"line 2: .*missing/cell_7.png does not exist") as missing:
        prediction_jobs.run_job(predictor, str(list_file), tmp_path / "out", progress=False)
    with pytest.raises(errors.ConfigError, match="inside the images folder"):
        prediction_jobs.run_job(predictor, str(data), data / "results", progress=False)
    (tmp_path / "other").mkdir()
    prediction_jobs.write_atomically(tmp_path / "other" / prediction_jobs.JOB_FILE, '{"model": "m", "images": "i"}')
    with pytest.raises(errors.ConfigError, match="results of another job"):
        prediction_jobs.run_job(predictor, str(data), tmp_path / "other", progress=False)
    assert all("\n" not in str(error.value) for error in (empty, missing))
    assert not (tmp_path / "out").exists() and not (data / "results").exists()


def test_command_line_on_a_scheduler_resumes(classifier, cluster, tmp_path, capsys):
    output = tmp_path / "results"
    arguments = ["classification", "predict", "--model", str(classifier["run"].root), "--images",
                 str(classifier["data"]), "--output", str(output), "--scheduler", cluster.scheduler_address]
    assert cli.main(arguments) == 0
    assert_same_predictions(read_csv(output / "predictions.csv"), classifier["single"])
    assert cli.main(arguments) == 0  # the same command again: everything found done
    assert "0 now, 12 found done" in capsys.readouterr().out
    assert cli.main(arguments[:-2] + ["--workers", "-1"]) == cli.USER_ERROR_EXIT_CODE
    assert "--workers" in capsys.readouterr().err


@pytest.fixture(scope="module")
def grader(tmp_path_factory):
    """A grading run (3 grades, CORAL head, untrained MobileNetV3-Small at 32 px) and its single-process CSV."""
    from helpers import config as config_module
    from helpers.classification import predict
    from helpers.grading import demo_data
    from helpers.grading import model as grading_model
    from helpers.grading import predict as grading_predict
    from helpers.grading import train as grading_train
    from helpers.grading.config import GradingConfig

    tmp_path = tmp_path_factory.mktemp("prediction_jobs_grading")
    images_dir, labels = demo_data.make_grading_demo(tmp_path / "data", patients_per_grade=1, num_grades=3,
                                                     image_size=48)
    config = config_module.config_from_form(GradingConfig, "quick", images_dir=str(images_dir), labels_csv=str(labels),
                                            model_path=str(tmp_path / "models"), model_name="eyes", image_size=32,
                                            num_grades=3, referable_threshold=1, head="cumulative",
                                            backbone="mobilenetv3small")
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    predict.export_model(grading_model.build_grading_model("cumulative", "mobilenetv3small", 3, 32), config.grade_names,
                         run)
    grading_train.write_grading_file(run.exported_model, config, None)
    single = grading_predict.predict_folder(run.root, images_dir, tmp_path / "single")
    return {"run": run, "data": images_dir, "single": read_csv(single.csv_path)}


def test_grading_command_line_on_two_workers(grader, cluster, tmp_path):
    output = tmp_path / "results"
    assert cli.main(["grading", "predict", "--model", str(grader["run"].root), "--images", str(grader["data"]),
                     "--output", str(output), "--scheduler", cluster.scheduler_address]) == 0
    assert_same_predictions(read_csv(output / "predictions.csv"), grader["single"])
    assert len(grader["single"]) > 3


class StandInDetector:
    """Stands in for ``export.load_exported_model``'s detector (no TensorFlow): boxes that depend on the image."""

    score_threshold = 0.3
    class_names = ["RBC", "WBC"]
    pixel_scale = None
    nms_iou_threshold = 0.5
    image_size = 64

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)

    def detect(self, pixels, score_threshold, filename, object_size_ratio):
        from helpers.prediction_formats import Detection

        width, height = pixels.width / object_size_ratio, pixels.height / object_size_ratio
        return [Detection(filename, "WBC", 0.9, 1.5, 2.0, width / 2, height / 2),
                Detection(filename, "RBC", 0.6, 1.0, 1.0, width / 2 + 1, height / 2),  # the same cell: counted once
                Detection(filename, "RBC", 0.1, 5, 5, 9, 9)]  # under the threshold


def stand_in_load(folder: str):
    """What ``prediction_job.load`` returns, for the stand-in detector (runs in the workers)."""
    from helpers import figures

    return StandInDetector(folder), figures.class_colours(StandInDetector.class_names)


@pytest.fixture(scope="module")
def detection_images(tmp_path_factory):
    """Five images of different sizes, one of them unreadable; a run folder whose exported model is the stand-in."""
    import numpy as np

    from helpers import images

    root = tmp_path_factory.mktemp("prediction_jobs_detection")
    source = root / "images"
    for index, shape in enumerate([(48, 64, 3), (32, 40, 3), (60, 30, 3), (50, 50, 3)]):
        images.write_image(source / f"field_{index}.png", np.full(shape, 40 * index, np.uint8))
    (source / "broken.png").write_bytes(b"not a png")
    exported = root / "run" / "exported_model"
    exported.mkdir(parents=True)
    (exported / "saved_model.pb").write_bytes(b"")
    (exported / "dl4cells_model.json").write_text(json.dumps({
        "class_names": StandInDetector.class_names, "image_size": 64, "score_threshold": 0.3, "nms_iou_threshold": 0.5}))
    return {"source": source, "run": runs.RunFolder(root=root / "run"), "root": root}


def test_detection_job_writes_the_single_process_files(detection_images, cluster, tmp_path, monkeypatch):
    import sys
    import types

    import helpers.detection
    from helpers.detection import prediction_job, predict

    source, run = detection_images["source"], detection_images["run"]
    fake_export = types.SimpleNamespace(load_exported_model=StandInDetector)
    monkeypatch.setitem(sys.modules, "helpers.detection.export", fake_export)
    monkeypatch.setattr(helpers.detection, "export", fake_export, raising=False)
    single = predict.predict_folder(run.root, source, tmp_path / "single", progress=False, object_size_ratio=2)
    predictor = prediction_job.job_predictor(run, tmp_path / "job", str(source), object_size_ratio=2)
    predictor = dataclasses.replace(predictor, load=functools.partial(stand_in_load, str(run.exported_model)))
    result = prediction_jobs.run_job(predictor, str(source), tmp_path / "job", chunk_size=2,
                                     scheduler=cluster.scheduler_address, progress=False)
    assert (result.images, [name for name, _ in result.unreadable]) == (4, ["broken.png"])
    assert [name for name, _ in single.unreadable] == ["broken.png"]
    expected = {path.relative_to(tmp_path / "single").as_posix(): path.read_bytes()
                for path in (tmp_path / "single").rglob("*") if path.is_file()}
    written = {path.relative_to(tmp_path / "job").as_posix(): path.read_bytes()
               for path in (tmp_path / "job").rglob("*") if path.is_file()
               and path.parts[len((tmp_path / "job").parts)] not in (prediction_jobs.PER_IMAGE_FOLDER, "job.json")}
    assert sorted(written) == sorted(expected) and len(expected) > 15  # csv, counts, COCO, VOC, overlays, viewers
    assert written == expected
    assert b"2.0" in expected["prediction_settings.json"]  # the object size ratio reached the workers


def test_detection_images_of_one_name_in_two_folders_keep_their_own_voc_and_overlay_files(tmp_path, monkeypatch):
    import sys
    import types

    import numpy as np

    import helpers.detection
    from helpers import images
    from helpers.detection import prediction_job

    for folder, value in (("plate_a", 30), ("plate_b", 200)):
        images.write_image(tmp_path / "screen" / folder / "well_01.png", np.full((40, 48, 3), value, np.uint8))
    exported = tmp_path / "run" / "exported_model"
    exported.mkdir(parents=True)
    (exported / "saved_model.pb").write_bytes(b"")
    (exported / "dl4cells_model.json").write_text(json.dumps({
        "class_names": StandInDetector.class_names, "image_size": 64, "score_threshold": 0.3, "nms_iou_threshold": 0.5}))
    fake_export = types.SimpleNamespace(load_exported_model=StandInDetector)
    monkeypatch.setitem(sys.modules, "helpers.detection.export", fake_export)
    monkeypatch.setattr(helpers.detection, "export", fake_export, raising=False)
    pattern = str(tmp_path / "screen" / "*" / "*.png")
    predictor = prediction_job.job_predictor(runs.RunFolder(root=tmp_path / "run"), tmp_path / "job", pattern)
    predictor = dataclasses.replace(predictor, load=functools.partial(stand_in_load, str(exported)))
    result = prediction_jobs.run_job(predictor, pattern, tmp_path / "job", workers=0, progress=False)
    assert result.images == 2
    voc_files = sorted(path.relative_to(tmp_path / "job" / "voc").as_posix()
                       for path in (tmp_path / "job" / "voc").rglob("*.xml"))
    assert voc_files == ["plate_a/well_01.xml", "plate_b/well_01.xml"]
    overlays = [images.read_image(tmp_path / "job" / "overlays" / folder / "well_01.png") for folder in ("plate_a", "plate_b")]
    assert overlays[0].mean() != overlays[1].mean()  # each image's own overlay, none overwritten
    for folder, suffix in (("qupath", ".geojson"), ("imagej_rois", ".zip"), ("napari", "_shapes.csv")):
        assert sorted(path.relative_to(tmp_path / "job" / folder).as_posix()
                      for path in (tmp_path / "job" / folder).rglob("*") if path.is_file()) == \
            [f"plate_a/well_01{suffix}", f"plate_b/well_01{suffix}"], folder
