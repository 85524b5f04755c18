"""Prediction at scale: many images, several worker processes or a cluster, resumable (``dl4cells TASK predict``).

A job streams image paths (a folder, a glob such as ``"/data/screen/**/*.tif"``, or a text file listing one
path per line) and predicts them in small chunks, each chunk a work item:

* ``workers=0``: in this process, no Dask at all (what a notebook on Colab needs: one GPU, one process;
  the notebook's section 6 keeps its own single-process ``predict_folder``);
* ``workers=N``: a local Dask cluster of N worker processes (``distributed.LocalCluster``, one thread each,
  so each process holds one model and TensorFlow's own threads);
* ``scheduler="tcp://host:8786"``: the workers of an existing Dask scheduler, e.g. a dask-jobqueue SLURM
  cluster (docs/cluster.md). The workers must see the images and the output folder at the same paths.

Each worker process loads the model once (``loaded_model``: a cache keyed by the model, inside the process)
and writes one small JSON file per image under ``<output>/per_image/`` (temporary file, then rename: a killed
worker never leaves half a file). At the end the per-image files are merged, by file name, into the task's
usual ``predictions.csv`` (same columns and order as the single-process prediction). Running the same job
again skips every image that already has its file, so a killed job continues where it stopped; ``job.json``
records the model and the images, and a different model or images into the same output folder is refused.
Only the output folder is written, never the images' folders.

A very large image (a slide or a stitched scan) is not one work item: a task that says how to cut it
(``TaskPredictor.parts``, detection's windows) gets one work item per part, so one slide is spread over all
workers; each part's result is a file under ``<output>/per_part/``, and the worker that finishes an image's
last part joins them (detection: the merge across window seams) into the image's record. A resumed job
predicts only the parts without a file.

The task-specific part is a ``TaskPredictor`` (picklable: module-level functions and plain values), made
by the task (``helpers.<task>.workflow.prediction_job``); this module imports no task package.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import glob
import itertools
import json
import os
import pathlib
from typing import Any, Callable, Iterable, Iterator, Sequence

from helpers import errors, images

PER_IMAGE_FOLDER = "per_image"
# Results of parts of very large images (``TaskPredictor.parts``), kept until the job's end like per_image.
PER_PART_FOLDER = "per_part"
JOB_FILE = "job.json"
GLOB_CHARACTERS = "*?["
# Work items in flight per worker: enough to keep a worker busy while the next chunk travels, few enough that
# a killed job loses little and the image paths waiting in memory stay bounded.
CHUNKS_IN_FLIGHT_PER_WORKER = 2

# Inside a worker process (or this one for workers=0): model key -> the loaded model. One entry at a time, so
# a long-lived worker that serves another model frees the first.
_LOADED_MODELS: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True)
class TaskPredictor:
    """What a task gives a job. Everything is picklable (sent to every worker).

    Attributes:
        model_key: identifies the model (its folder and file time): the per-process cache key.
        load: ``load() -> model`` (anything the task's ``predict`` takes); called once per worker process.
        predict: ``predict(model, paths) -> outcomes``: for each path (same order) either a list of rows, each
            the values of ``header[1:]`` for that image; or a dict of JSON values (the image's record, read
            by ``merge``); or a string saying why the image could not be read.
        header: the columns of ``predictions.csv``, the first ``filename``.
        recursive: a folder's subfolders are predicted too (classification and grading), or only its own
            files (detection), as in the task's single-process prediction.
        merge: ``merge(output_dir, records)`` writes ``predictions.csv`` and the task's other files from the
            records of the readable images (dicts with ``name``), in name order; None = the rows under ``header``.
        parts: ``parts(path) -> K``, read on the client from the file's header: a very large image is K work
            items (K > 1), so that one slide is spread over the workers; None or 1 = the image is one item.
        predict_part: ``predict_part(model, path, k, K) -> dict`` (JSON values): part k of the image's K.
        join_parts: ``join_parts(model, path, [K part dicts]) -> outcome`` (as ``predict`` gives for one
            path), run by the worker that finds the image's last part done.
    """

    model_key: str
    load: Callable[[], Any]
    predict: Callable[[Any, list[pathlib.Path]], list]
    header: tuple[str, ...]
    recursive: bool = True
    merge: Callable[[pathlib.Path, Iterator[dict]], Any] | None = None
    parts: Callable[[pathlib.Path], int] | None = None
    predict_part: Callable[[Any, pathlib.Path, int, int], dict] | None = None
    join_parts: Callable[[Any, pathlib.Path, list[dict]], Any] | None = None


@dataclasses.dataclass
class JobResult:
    """What ``run_job`` did.

    Attributes:
        output_dir: the results folder. csv_path: its merged ``predictions.csv``.
        predicted: images predicted by this run. resumed: images found already predicted (skipped).
        images: images with a result in ``predictions.csv`` (all runs). unreadable: (name, reason) of the others.
        where: how it ran, in words ("in this process", "2 local worker processes", "scheduler tcp://...").
    """

    output_dir: pathlib.Path
    csv_path: pathlib.Path
    predicted: int
    resumed: int
    images: int
    unreadable: list[tuple[str, str]]
    where: str

    def show(self) -> None:
        """Print what was done and where the results are."""
        print(f"{self.images} images predicted into {self.csv_path} ({self.predicted} now, {self.resumed} found "
              f"done by an earlier run; {self.where}).")
        for name, reason in self.unreadable:
            print(f"  not predicted {name}: {reason}")


# ----- image paths ------------------------------------------------------------------------------
def _is_visible_image(path: pathlib.Path, root: pathlib.Path) -> bool:
    return (images.is_image_file(path) and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(root).parts))


def _folder_images(folder: pathlib.Path, recursive: bool) -> Iterator[tuple[str, pathlib.Path]]:
    """(name relative to ``folder``, path) of its images, one directory listing at a time (hidden ones skipped)."""
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(name for name in subdirectories if recursive and not name.startswith("."))
        for name in sorted(files):
            path = pathlib.Path(directory) / name
            if _is_visible_image(path, folder):
                yield path.relative_to(folder).as_posix(), path


def glob_root(pattern: str) -> pathlib.Path:
    """The folder of a glob pattern before its first wildcard (names are relative to it)."""
    parts = pathlib.Path(pattern).parts
    fixed = list(itertools.takewhile(lambda part: not any(character in part for character in GLOB_CHARACTERS), parts))
    return pathlib.Path(*fixed) if fixed else pathlib.Path(".")


def _glob_images(pattern: str) -> Iterator[tuple[str, pathlib.Path]]:
    root = glob_root(pattern)
    for found in glob.iglob(pattern, recursive=True):
        path = pathlib.Path(found)
        if images.is_image_file(path) and path.is_file():
            yield path.relative_to(root).as_posix(), path


def _list_entries(list_file: pathlib.Path) -> Iterator[tuple[int, str, pathlib.Path]]:
    """(line number, name, path) of each path in a list file (blank lines and ``#`` comments skipped).

    A relative path is relative to the list file's folder; the name is the path as written (POSIX separators).
    """
    with list_file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if text and not text.startswith("#"):
                written = pathlib.Path(text).expanduser()
                yield number, written.as_posix().lstrip("/"), written if written.is_absolute() else list_file.parent / written


def _checked_list(list_file: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """The list file's (name, path) pairs, after one streaming pass that refuses a missing or non-image entry."""
    for number, _, path in _list_entries(list_file):
        if not path.is_file():
            raise errors.DatasetError(f"--images: {list_file}, line {number}: {path} does not exist. Correct or "
                                      f"remove that line (relative paths are relative to the list file's folder).")
        if not images.is_image_file(path):
            raise errors.DatasetError(f"--images: {list_file}, line {number}: {path} is not an image (PNG, JPEG, BMP, "
                                      f"TIFF). Remove that line.")
    return ((name, path) for _, name, path in _list_entries(list_file))


def image_source(images_argument: str, recursive: bool = True) -> tuple[pathlib.Path | None, Iterator[tuple[str, pathlib.Path]]]:
    """(the images folder, or None for a list file; an iterator of (name, path)) for a folder, a glob or a list file.

    Names are what ``predictions.csv`` calls the images: the path relative to the folder (or to the glob's
    folder before its first wildcard), or as written in the list file. Paths are produced one at a time.

    Raises:
        DatasetError: nothing matches, or a list file names a missing file (one line naming it and the fix).
    """
    text = str(images_argument).strip()
    path = pathlib.Path(text).expanduser()
    if path.is_dir():
        root, pairs = path, _folder_images(path, recursive)
    elif path.is_file() and not images.is_image_file(path):
        root, pairs = None, _checked_list(path)
    elif any(character in text for character in GLOB_CHARACTERS):
        root, pairs = glob_root(os.path.expanduser(text)), _glob_images(os.path.expanduser(text))
    else:
        raise errors.DatasetError(f"--images: {text} is not a folder, a text file listing images, or a pattern such as "
                                  f"'folder/*.png'. Check the path.")
    first = next(pairs, None)
    if first is None:
        raise errors.DatasetError(f"--images: {text} matches no image (PNG, JPEG, BMP, TIFF). Check the folder, the "
                                  f"pattern or the list file.")
    return root, itertools.chain([first], pairs)


# ----- per-image results ------------------------------------------------------------------------
def result_path(per_image_dir: pathlib.Path, name: str) -> pathlib.Path:
    """``<per_image>/<name>.json`` (the image's subfolders kept, so names never collide).

    A ``..`` in a name (a list file's ``../other/cell.png``) becomes ``%2E%2E``: the file stays inside ``per_image``.
    """
    safe = "/".join("%2E%2E" if part == ".." else part for part in name.split("/"))
    return per_image_dir / f"{safe}.json"


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def model_key(run_root: pathlib.Path, model_file: pathlib.Path) -> str:
    """The run folder and the exported model's modification time (a re-exported model is loaded again)."""
    return f"{run_root.resolve()}@{model_file.stat().st_mtime_ns}"


def loaded_model(predictor: TaskPredictor) -> Any:
    """The predictor's model, loaded once per process (the cache holds one model)."""
    if predictor.model_key not in _LOADED_MODELS:
        _LOADED_MODELS.clear()
        _LOADED_MODELS[predictor.model_key] = predictor.load()
    return _LOADED_MODELS[predictor.model_key]


def part_path(per_image_dir: pathlib.Path, name: str, part: int, parts: int) -> pathlib.Path:
    """``<output>/per_part/<name>/<k>-of-<K>.json``: the result of part k of an image of K parts."""
    folder = result_path(per_image_dir.parent / PER_PART_FOLDER, name).with_suffix("")
    return folder / f"{part}-of-{parts}.json"


def predict_chunk(predictor: TaskPredictor, chunk: Sequence[tuple], per_image_dir: str) -> float:
    """The work item: predict ``chunk``, write one result file per image (or per part); returns images done.

    ``chunk`` holds (name, path) entries of whole images, or one (name, path, k, K) entry: part k of an
    image cut into K parts (counted as 1/K of an image).
    """
    per_image = pathlib.Path(per_image_dir)
    whole = [entry for entry in chunk if len(entry) == 2]
    if whole:
        outcomes = predictor.predict(loaded_model(predictor), [pathlib.Path(path) for _, path in whole])
        for (name, _), outcome in zip(whole, outcomes):
            write_atomically(result_path(per_image, name), json.dumps(_record(name, outcome), ensure_ascii=False))
    done = float(len(whole))
    for name, path, part, parts in (entry for entry in chunk if len(entry) == 4):
        _predict_part(predictor, per_image, name, pathlib.Path(path), part, parts)
        done += 1 / parts
    return done


def _predict_part(predictor: TaskPredictor, per_image_dir: pathlib.Path, name: str, path: pathlib.Path,
                  part: int, parts: int) -> None:
    """Predict part ``part`` of ``parts`` (unless its file exists); join the image once all its parts are there.

    Every part's file is written (atomically) before its worker looks for the others, so of two workers
    finishing an image's last two parts at once at least one sees all of them; when both do, both write the
    same record (the join is deterministic), which costs time but no result.
    """
    record_file = result_path(per_image_dir, name)
    target = part_path(per_image_dir, name, part, parts)
    model = loaded_model(predictor)
    try:
        if not target.is_file() and not record_file.is_file():
            write_atomically(target, json.dumps(predictor.predict_part(model, path, part, parts)))
        files = [part_path(per_image_dir, name, index, parts) for index in range(parts)]
        if record_file.is_file() or not all(file.is_file() for file in files):
            return
        outcome = predictor.join_parts(model, path, [json.loads(file.read_text(encoding="utf-8")) for file in files])
    except errors.DatasetError as error:  # the image turned out unreadable part-way
        outcome = str(error)
    write_atomically(record_file, json.dumps(_record(name, outcome), ensure_ascii=False))


def _record(name: str, outcome: str | list | dict) -> dict:
    """An image's per-image file: its name with its rows, its task record, or why it was unreadable."""
    if isinstance(outcome, str):
        return {"name": name, "unreadable": outcome}
    return {"name": name, **outcome} if isinstance(outcome, dict) else {"name": name, "rows": outcome}


def outcomes_in_order(paths: Sequence[pathlib.Path], kept: Sequence[pathlib.Path], rows: Sequence[list],
                      skipped: Sequence[str]) -> list:
    """Per path: ``[row]`` for a kept (readable) image, its message for an unreadable one.

    For predictors built on a batch function that returns the readable paths with their rows, and messages
    for the others in path order.
    """
    row_of = dict(zip(map(str, kept), rows))
    messages = iter(skipped)
    return [[row_of[str(path)]] if str(path) in row_of else next(messages, "unreadable") for path in paths]


def read_records(per_image_dir: pathlib.Path) -> Iterator[dict]:
    """The per-image records sorted by image name, read one at a time (only the names are held)."""
    files = sorted((path.relative_to(per_image_dir).as_posix()
                    for path in per_image_dir.rglob("*.json") if not path.name.startswith(".")),
                   key=lambda file: file[:-len(".json")])  # the names' order ("x" before "x-1")
    for file in files:
        yield json.loads((per_image_dir / file).read_text(encoding="utf-8"))


def write_rows_csv(output_dir: pathlib.Path, records: Iterable[dict], header: Sequence[str]) -> pathlib.Path:
    """``predictions.csv`` (written whole, then renamed): ``header``, then each record's rows after its name."""
    csv_path = output_dir / "predictions.csv"
    temporary = csv_path.with_name(f".{csv_path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for record in records:
            writer.writerows([record["name"], *row] for row in record["rows"])
    os.replace(temporary, csv_path)
    return csv_path


def merge_results(predictor: TaskPredictor, output_dir: pathlib.Path) -> tuple[int, list[tuple[str, str]]]:
    """Write the merged files (``predictor.merge`` or ``write_rows_csv``); (readable images, (name, reason) of others)."""
    unreadable, readable = [], {"count": 0}

    def readable_records() -> Iterator[dict]:
        for record in read_records(output_dir / PER_IMAGE_FOLDER):
            if "unreadable" in record:
                unreadable.append((record["name"], record["unreadable"]))
            else:
                readable["count"] += 1
                yield record

    merge = predictor.merge or functools.partial(write_rows_csv, header=predictor.header)
    merge(output_dir, readable_records())
    return readable["count"], unreadable


# ----- the job ----------------------------------------------------------------------------------
def prepare_output(output_dir: pathlib.Path, description: dict, images_root: pathlib.Path | None) -> None:
    """Create the output folder, or accept it to resume the same job; refuse anything else.

    Raises:
        ConfigError: the folder holds other files, another job's results, or is inside the images folder.
    """
    if images_root is not None and output_dir.resolve().is_relative_to(images_root.resolve()):
        raise errors.ConfigError(f"--output: {output_dir} is inside the images folder {images_root}. Choose a folder "
                                 f"outside it (your image folders are only read).")
    job_file = output_dir / JOB_FILE
    if job_file.is_file():
        earlier = json.loads(job_file.read_text(encoding="utf-8"))
        if earlier != description:
            raise errors.ConfigError(f"--output: {output_dir} holds the results of another job ({earlier.get('model')} "
                                     f"on {earlier.get('images')}). Give a new folder, or the same --model and --images "
                                     f"to resume that job.")
        return
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise errors.ConfigError(f"--output: {output_dir} already exists and is not an empty folder. Give a new folder "
                                 f"name; nothing in it was touched.")
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(job_file, json.dumps(description, indent=1, ensure_ascii=False))


def _chunks(entries: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    """Work items: lists of at most ``size`` whole-image entries (name, path); each part entry alone."""
    chunk = []
    for entry in entries:
        if len(entry) == 4:
            yield [entry]
            continue
        chunk.append(entry)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _work_entries(predictor: TaskPredictor, pairs: Iterable[tuple[str, pathlib.Path]],
                  per_image_dir: pathlib.Path) -> Iterator[tuple]:
    """(name, path) for an image that is one work item; (name, path, k, K) for each part still to predict.

    An image whose parts are all done but which has no record (the job stopped while joining it) gets one
    entry of its last part, which joins it.
    """
    for name, path in pairs:
        parts = 1
        if predictor.parts is not None:
            try:
                parts = int(predictor.parts(path))
            except errors.DatasetError:
                parts = 1  # unreadable: the whole-image path reports it in the image's record
        if parts <= 1:
            yield name, str(path)
            continue
        missing = [part for part in range(parts) if not part_path(per_image_dir, name, part, parts).is_file()]
        for part in missing or [parts - 1]:
            yield name, str(path), part, parts


def worker_environment(workers: int) -> dict[str, str]:
    """Environment of local workers: TensorFlow's threads per process = this machine's cores / workers.

    Each TensorFlow process otherwise starts one thread per core, and N processes on the same cores slow
    each other down (docs/benchmarks.md, "Prediction as a Dask job").
    """
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    return {"TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads}


def local_cluster(workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` processes, one Dask thread each, reachable from 127.0.0.1 only.

    No dashboard; the scheduler's small HTTP server (health checks) listens on a free port of 127.0.0.1, so
    two clusters on one machine never compete for Dask's default port 8787.
    """
    import distributed

    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                    env=worker_environment(workers))


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler`` (an address or a ``.json`` scheduler file), or on a new local
    cluster of ``workers`` processes; None for 0 workers and no scheduler.

    The local cluster listens on 127.0.0.1 only, without a dashboard, and is closed on leaving.
    """
    if not scheduler and workers <= 0:
        yield None
        return
    import distributed

    if scheduler:
        # A scheduler file (``dask scheduler --scheduler-file``, as in an sbatch script) holds the address.
        where = {"scheduler_file": scheduler} if scheduler.endswith(".json") else {"address": scheduler}
        try:
            client = distributed.Client(**where, timeout="30s")
        except OSError as error:
            raise errors.ConfigError(f"--scheduler: no Dask scheduler answers at {scheduler} ({error}). Start it first "
                                     f"(docs/cluster.md) or use --workers N on this machine.") from None
        with client:
            yield client
        return
    with local_cluster(workers) as cluster, distributed.Client(cluster) as client:
        yield client


def _run_on_client(client: Any, predictor: TaskPredictor, chunks: Iterator[list], per_image_dir: str,
                   bar: Any) -> float:
    """Submit ``chunks`` keeping a bounded number in flight; returns the images predicted (parts as fractions).

    A failed work item cancels the others and raises its error (finished images keep their files).
    """
    import distributed

    window = CHUNKS_IN_FLIGHT_PER_WORKER * max(1, len(client.nthreads()))  # workers still starting: 1
    submit = lambda chunk: client.submit(predict_chunk, predictor, chunk, per_image_dir, pure=False)  # noqa: E731
    pending = distributed.as_completed([submit(chunk) for chunk in itertools.islice(chunks, window)], loop=client.loop)
    predicted = 0
    try:
        for future in pending:
            count = future.result()
            predicted += count
            bar.update(count)
            following = next(chunks, None)
            if following is not None:
                pending.add(submit(following))
    except BaseException:
        client.cancel(list(pending.futures))
        raise
    return predicted


def _predict_chunks(predictor: TaskPredictor, chunks: Iterator[list], per_image_dir: pathlib.Path, workers: int,
                    scheduler: str, progress: bool) -> tuple[float, str]:
    """Predict ``chunks`` in this process or on Dask; (images predicted, where, in words)."""
    from tqdm.auto import tqdm

    with dask_client(workers, scheduler) as client, tqdm(desc="Predicting", unit="image", disable=not progress) as bar:
        if client is not None:
            predicted = _run_on_client(client, predictor, chunks, str(per_image_dir), bar)
            return predicted, f"scheduler {scheduler}" if scheduler else f"{workers} local worker processes"
        predicted = 0.0
        for chunk in chunks:
            done = predict_chunk(predictor, chunk, str(per_image_dir))
            predicted += done
            bar.update(done)
        return predicted, "in this process"


def run_job(predictor: TaskPredictor, images_argument: str, output_dir: str | pathlib.Path, workers: int = 0,
            scheduler: str = "", chunk_size: int = 16, progress: bool = True,
            description: dict | None = None, stop_after: int | None = None) -> JobResult:
    """Predict every image of a folder, glob or list file into ``output_dir``; resumes an interrupted job.

    Args:
        predictor: the task's ``TaskPredictor``.
        images_argument: a folder, a glob pattern or a text file listing image paths.
        output_dir: new or empty folder, or the folder of the same job to resume.
        workers: 0 = in this process; N = a local cluster of N worker processes.
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
        chunk_size: images per work item (one model call each).
        description: what identifies the job in ``job.json`` (default: the model key and the images).
        stop_after: predict at most this many new images, then merge and stop (try a job on a few images
            first; the same job again continues). None = all.

    Returns:
        The ``JobResult``; ``predictions.csv`` is in ``output_dir``.
    """
    root, pairs = image_source(images_argument, predictor.recursive)
    output_dir = pathlib.Path(output_dir).expanduser()
    prepare_output(output_dir, description or {"model": predictor.model_key, "images": str(images_argument)}, root)
    per_image_dir = output_dir / PER_IMAGE_FOLDER
    per_image_dir.mkdir(exist_ok=True)
    records_before = _record_count(per_image_dir)
    done = {"count": 0}

    def not_done(pair: tuple[str, pathlib.Path]) -> bool:
        finished = result_path(per_image_dir, pair[0]).is_file()
        done["count"] += finished
        return not finished

    entries = _work_entries(predictor, itertools.islice(filter(not_done, pairs), stop_after), per_image_dir)
    chunks = _chunks(entries, max(1, int(chunk_size)))
    first = next(chunks, None)  # None: every image is done already, no cluster needed
    if first is None:
        where = "nothing left to predict"
    else:
        where = _predict_chunks(predictor, itertools.chain([first], chunks), per_image_dir, workers, scheduler,
                                progress)[1]
    written, unreadable = merge_results(predictor, output_dir)
    # Images finished by this run: whole images, and very large ones whose last part this run predicted or joined.
    predicted = _record_count(per_image_dir) - records_before
    return JobResult(output_dir, output_dir / "predictions.csv", predicted, done["count"], written, unreadable, where)


def _record_count(per_image_dir: pathlib.Path) -> int:
    """How many images have their result file (``per_image/**/*.json``)."""
    return sum(1 for path in per_image_dir.rglob("*.json") if not path.name.startswith("."))
