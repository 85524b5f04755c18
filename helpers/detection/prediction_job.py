"""The detector as a ``helpers.prediction_jobs.TaskPredictor``: prediction on Dask workers, resumable.

Each worker runs ``predict.predict_image`` (the single-process prediction's step: the model's pixel scale and
windows, ``voc/<name>.xml`` and ``overlays/<name>.png`` written for the image, ``<name>`` its path under the
images folder without extension: ``output_stem``) and keeps the image's boxes at
the score threshold, its size and its window count in its per-image record. The merge rebuilds the boxes and
writes the folder's files with ``predict.write_folder_files``, as ``predict.predict_folder`` does:
predictions.csv, counts.csv, COCO results, the QuPath/Fiji/napari/Label Studio files and
prediction_settings.json. The candidates below the threshold (the annotation loop's ranking) stay in the
notebook's single-process prediction.

An image of more than ``WINDOWS_PER_PART`` windows at the model's scale (a slide, a stitched scan) is cut
into parts of that many windows (``image_parts``, from the file's header): each part is a work item
(``predict_part``: ``ExportedDetector.detect_window_range``), and the worker that completes the image joins
the parts (``join_parts``: ``ExportedDetector.merge_window_parts``, the merge across seams of ``detect``) and
writes its VOC and overlay, so the files are the single-process ones.
"""

from __future__ import annotations

import functools
import json
import pathlib
import types
from typing import Iterable

from helpers import errors, figures, images, prediction_formats, prediction_jobs, runs

BOX_FIELDS = ("class_name", "score", "xmin", "ymin", "xmax", "ymax")
# Windows per work item of a very large image (4 calls of the model's 4-window batches): a 10,000-px slide
# at BCCD's scale (961 windows) becomes 61 work items spread over the workers; a BCCD-sized field stays whole.
WINDOWS_PER_PART = 16


def load(exported_folder: str):
    """(the exported detector, its class colours), once per worker process."""
    from helpers.detection import export

    detector = export.load_exported_model(exported_folder)
    return detector, figures.class_colours(detector.class_names)


def detector_metadata(exported_folder: pathlib.Path) -> types.SimpleNamespace:
    """What the merge needs of the detector, from ``dl4cells_model.json`` (the model itself is not loaded here).

    Raises:
        ModelError: the folder holds no exported DL4Cells detector.
    """
    from helpers.detection import tiling

    path = exported_folder / "dl4cells_model.json"
    if not path.is_file():
        raise errors.ModelError(f"{exported_folder}: no exported detection model here. Give the run folder of a "
                                f"finished training run.")
    metadata = json.loads(path.read_text(encoding="utf-8"))
    scale = metadata.get("pixel_scale")
    return types.SimpleNamespace(folder=exported_folder, class_names=list(metadata["class_names"]),
                                 image_size=int(metadata["image_size"]), score_threshold=float(metadata["score_threshold"]),
                                 nms_iou_threshold=float(metadata.get("nms_iou_threshold", 0.5)),
                                 pixel_scale=tiling.PixelScale.from_dict(scale) if scale else None)


def output_stem(path: pathlib.Path, images_root: str) -> str:
    """The name of an image's ``voc/`` and ``overlays/`` files: its path under ``images_root`` without extension.

    Images of one name in different folders of a glob or list (``a/x.png``, ``b/x.png``) so keep their own files
    (``voc/a/x.xml``, ``voc/b/x.xml``); for a folder it is the image's stem, as ``predict_folder`` names them.
    An absolute list entry outside ``images_root`` keeps its stem.
    """
    try:
        return path.resolve().relative_to(pathlib.Path(images_root).resolve()).with_suffix("").as_posix()
    except ValueError:
        return path.stem


def predict_images(loaded, paths: list[pathlib.Path], output_dir: str, threshold: float,
                   object_size_ratio: float, images_root: str = "") -> list:
    """Per path: its record (boxes, size, windows) or why it could not be read (``TaskPredictor.predict``)."""
    from helpers.detection import predict

    detector, colours = loaded
    output = pathlib.Path(output_dir)
    for subfolder in ("voc", "overlays"):
        (output / subfolder).mkdir(parents=True, exist_ok=True)
    outcomes = []
    for path in paths:
        try:
            image = predict.predict_image(detector, path, output, threshold, object_size_ratio, colours,
                                          output_stem(path, images_root) if images_root else None)
        except errors.DatasetError as error:
            outcomes.append(str(error))
            continue
        boxes = [[getattr(detection, field) for field in BOX_FIELDS] for detection in image.found]
        outcomes.append({"boxes": boxes, "size": list(image.size), "windows": image.windows})
    return outcomes


def image_parts(path: pathlib.Path, pixel_scale, object_size_ratio: float, windows_per_part: int) -> int:
    """How many work items an image is (``TaskPredictor.parts``): one per ``windows_per_part`` of its windows.

    Read from the file's header on the client; 1 for an image of at most ``windows_per_part`` windows and for a
    model without pixel scale.
    """
    import math

    if pixel_scale is None:
        return 1
    width, height = images.image_size(path)
    windows = pixel_scale.windows_for(width, height, object_size_ratio)
    return 1 if windows <= windows_per_part else math.ceil(windows / windows_per_part)


def predict_part(loaded, path: pathlib.Path, part: int, parts: int, threshold: float,
                 object_size_ratio: float) -> dict:
    """Windows of part ``part`` of ``parts`` of one image (``ExportedDetector.detect_window_range``), and its size."""
    import math

    from helpers.detection import predict, tiling

    detector, _ = loaded
    source = tiling.open_image(path)
    windows = detector.window_count(source.width, source.height, object_size_ratio)
    per_part = math.ceil(windows / parts)
    result = detector.detect_window_range(source, min(threshold, predict.CANDIDATE_SCORE_FLOOR), object_size_ratio,
                                          part * per_part, (part + 1) * per_part)
    return {**result, "size": [source.width, source.height]}


def join_parts(loaded, path: pathlib.Path, results: list[dict], output_dir: str, threshold: float,
               object_size_ratio: float, images_root: str = "") -> dict:
    """The image's record from all its parts: merged across seams as ``detect`` merges them; its VOC and overlay."""
    from helpers.detection import predict, tiling

    detector, colours = loaded
    candidates = detector.merge_window_parts(results, filename=path.name)
    image = predict.write_image_files(detector, path, tiling.open_image(path), candidates, pathlib.Path(output_dir),
                                      threshold, object_size_ratio, colours,
                                      output_stem(path, images_root) if images_root else None)
    boxes = [[getattr(detection, field) for field in BOX_FIELDS] for detection in image.found]
    return {"boxes": boxes, "size": list(image.size), "windows": image.windows}


def merge(output_dir: pathlib.Path, records: Iterable[dict], detector: types.SimpleNamespace, threshold: float,
          object_size_ratio: float, count_each_object_once: bool, run_root: str, images_folder_name: str) -> None:
    """The folder's files from the per-image records (in name order), as ``predict.predict_folder`` writes them."""
    from helpers.detection import predict

    detections, image_ids, sizes, windows = [], {}, {}, {}
    for record in records:
        name = record["name"]
        image_ids[name] = len(image_ids) + 1
        sizes[name] = tuple(record["size"])
        detections += [prediction_formats.Detection(name, *box) for box in record["boxes"]]
        if record["windows"] is not None:
            windows[name] = record["windows"]
    predict.write_folder_files(output_dir, detector, threshold, detections, image_ids, sizes, windows,
                               object_size_ratio, count_each_object_once, run_root, images_folder_name)


def images_root(images_argument: str) -> pathlib.Path:
    """The folder the job's image names are relative to: the folder, a pattern's folder, or the list file's folder."""
    path = pathlib.Path(str(images_argument).strip()).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_file():
        return path.resolve().parent
    return prediction_jobs.glob_root(str(path)).resolve()


def images_folder_name(images_argument: str) -> str:
    """The folder name Label Studio's image links use (the name of ``images_root``)."""
    return images_root(images_argument).name


def job_predictor(run: runs.RunFolder, output_dir: str | pathlib.Path, images_argument: str,
                  object_size_ratio: float | str = 1.0, count_each_object_once: bool = True,
                  windows_per_part: int = WINDOWS_PER_PART) -> prediction_jobs.TaskPredictor:
    """The ``TaskPredictor`` of a run's exported detector writing into ``output_dir`` (the job's output folder).

    An image of more than ``windows_per_part`` windows at the model's scale is cut into parts of that many
    windows, each a work item of its own.
    """
    from helpers.detection import predict

    exported = run.exported_model
    detector = detector_metadata(exported)
    ratio = predict.checked_object_size_ratio(object_size_ratio)
    output = str(pathlib.Path(output_dir).expanduser().resolve())  # workers on other machines get the same path
    predict_function = functools.partial(predict_images, output_dir=output, threshold=detector.score_threshold,
                                         object_size_ratio=ratio, images_root=str(images_root(images_argument)))
    merge_function = functools.partial(merge, detector=detector, threshold=detector.score_threshold,
                                       object_size_ratio=ratio, count_each_object_once=bool(count_each_object_once),
                                       run_root=str(run.root), images_folder_name=images_folder_name(images_argument))
    root = str(images_root(images_argument))
    return prediction_jobs.TaskPredictor(
        prediction_jobs.model_key(run.root, exported / "saved_model.pb"), functools.partial(load, str(exported)),
        predict_function, tuple(prediction_formats.PREDICTION_COLUMNS), recursive=False, merge=merge_function,
        parts=functools.partial(image_parts, pixel_scale=detector.pixel_scale, object_size_ratio=ratio,
                                windows_per_part=max(1, int(windows_per_part))),
        predict_part=functools.partial(predict_part, threshold=detector.score_threshold, object_size_ratio=ratio),
        join_parts=functools.partial(join_parts, output_dir=output, threshold=detector.score_threshold,
                                     object_size_ratio=ratio, images_root=root))
