"""Benchmark: seconds per training step of each detection backbone, and our pipeline's overhead.

For each backbone and image size, on synthetic demo images (no download needed):

* ``pipeline``: our training step fed by our input path (TFRecords written by
  ``helpers.detection.records`` → Model Garden's parser → ``tf.distribute`` iterator), as in a run;
* ``bare``: Model Garden's own ``RetinaNetTask.train_step`` on one batch already in memory.

``overhead_ratio = bare_seconds / pipeline_seconds`` (1.0 = no overhead; issue goal ≥ 0.95).
Medians over ``--steps`` timed steps after ``--warmup`` steps (the first call compiles the graph),
wall and CPU seconds (the process's user + system time, every thread).

``--threads N`` sets TensorFlow's intra- and inter-op pools and the input pipeline's tf.data pool to
N threads (the thread table of issue 13); ``--sync-bn`` keeps Model Garden's synchronised batch norm
of ``retinanet_mobile_coco`` (our model turns it off on one replica: the before/after row).

    .venv/bin/python bench/detection_speed.py --sizes 256 512 --steps 10
    taskset -c 0,1 .venv/bin/python bench/detection_speed.py --backbones spinenet49_mobile --sizes 384 --threads 1
    .venv/bin/python bench/detection_speed.py --backbones spinenet49_mobile --sizes 384 --sync-bn
    .venv/bin/python bench/detection_speed.py --smoke
Writes ``bench/output/detection_speed/<time>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))


def time_steps(function, warmup: int, steps: int) -> float:
    """Median seconds of ``function()`` over ``steps`` calls after ``warmup`` calls."""
    return time_steps_with_cpu(function, warmup, steps)[0]


def time_steps_with_cpu(function, warmup: int, steps: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds of the whole process) of ``function()`` over ``steps``
    calls after ``warmup`` calls; CPU seconds count every thread, so on 2 busy cores they near 2 × wall."""
    for _ in range(warmup):
        function()
    walls, cpus = [], []
    for _ in range(steps):
        started, started_cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - started_cpu)
    return statistics.median(walls), statistics.median(cpus)


def limit_threads(threads: int) -> None:
    """TensorFlow's intra- and inter-op pools at ``threads`` threads (0 = TensorFlow's default, one per
    core); must run before TensorFlow executes anything."""
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def keep_model_garden_sync_bn():
    """A context in which our model keeps Model Garden's ``use_sync_bn`` on one replica (the 'before' of
    the sync-BN row): ``model._sync_batch_norm_only_across_replicas`` does nothing inside it."""
    from unittest import mock

    from helpers.detection import model as model_module

    return mock.patch.object(model_module, "_sync_batch_norm_only_across_replicas", lambda experiment, replicas: None)


def with_threads(dataset, threads: int):
    """``dataset`` with its tf.data work on a private pool of ``threads`` threads (0 = unchanged)."""
    import tensorflow as tf

    if threads <= 0:
        return dataset
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def measure(backbone: str, size: int, batch_size: int, warmup: int, steps: int, work: pathlib.Path,
            threads: int = 0, sync_bn: bool = False) -> dict:
    """Seconds per step of our pipeline and of Model Garden's bare train_step for one backbone/size.

    ``threads``: the tf.data pool size of the input pipeline (0 = default; ``limit_threads`` sets the
    rest); ``sync_bn``: keep Model Garden's ``use_sync_bn`` (the model's one-replica rule is skipped).
    """
    import tensorflow as tf

    from helpers import config as config_module
    from helpers import runs
    from helpers.detection import dataset as detection_dataset
    from helpers.detection import demo_data
    from helpers.detection import train
    from helpers.detection.config import DetectionConfig

    data = demo_data.make_detection_demo(work / "data", number_of_images=16, image_size=(512, 384))
    dataset = detection_dataset.load_detection_dataset(data / "images", data / "annotations", progress=False)
    config = config_module.config_from_form(
        DetectionConfig, "default", images_dir=str(data / "images"), annotations_dir=str(data / "annotations"),
        model_path=str(work / "models"), model_name=f"{backbone}-{size}", backbone=backbone, pretrained="none",
        image_size=size, batch_size=batch_size, epochs=1, steps_per_epoch=warmup + steps)
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    train_set, _ = train._write_record_sets(config, run, dataset.items, [], dataset.classes, dataset.usable_objects)
    with keep_model_garden_sync_bn() if sync_bn else contextlib.nullcontext():
        loop = train._build_loop(config, run, dataset.classes, train_set, None, (), tf.distribute.get_strategy())
    uses_sync_bn = bool(loop.experiment.task.model.norm_activation.use_sync_bn)
    iterator = iter(loop.strategy.distribute_datasets_from_function(
        lambda context: with_threads(loop.task.build_inputs(loop.experiment.task.train_data, context), threads)))
    step = train._train_step_function(loop)
    pipeline_seconds, pipeline_cpu_seconds = time_steps_with_cpu(lambda: step(iterator), warmup, steps)

    batch = next(iter(loop.task.build_inputs(loop.experiment.task.train_data)))
    bare_step = tf.function(lambda inputs: loop.task.train_step(inputs, loop.model, loop.optimizer, metrics=[]))
    bare_seconds = time_steps(lambda: bare_step(batch), warmup, steps)
    return {"backbone": backbone, "image_size": size, "batch_size": batch_size, "threads": threads or "default",
            "use_sync_bn": uses_sync_bn,
            "pipeline_seconds_per_step": round(pipeline_seconds, 4), "bare_seconds_per_step": round(bare_seconds, 4),
            "pipeline_cpu_seconds_per_step": round(pipeline_cpu_seconds, 4),
            "pipeline_images_per_second": round(batch_size / pipeline_seconds, 2),
            "overhead_ratio": round(bare_seconds / pipeline_seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["spinenet49_mobile", "mobilenetv2_fpn", "resnet50_fpn",
                                                           "spinenet49"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra/inter-op and tf.data threads (0 = TensorFlow's default: one per core)")
    parser.add_argument("--sync-bn", action="store_true",
                        help="keep Model Garden's synchronised batch norm (the 'before' of the sync-BN row)")
    parser.add_argument("--output", default=str(REPOSITORY_ROOT / "bench" / "output" / "detection_speed"))
    parser.add_argument("--smoke", action="store_true", help="one backbone, 128 px, batch 2, 1+2 steps")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.backbones, arguments.sizes, arguments.batch_size = ["spinenet49_mobile"], [128], 2
        arguments.warmup, arguments.steps = 1, 2
    limit_threads(arguments.threads)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for backbone in arguments.backbones:
            for size in arguments.sizes:
                rows.append(measure(backbone, size, arguments.batch_size, arguments.warmup, arguments.steps,
                                    pathlib.Path(work) / f"{backbone}-{size}", arguments.threads, arguments.sync_bn))
                print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "detection_speed", "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
              "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(), "arguments": vars(arguments),
              "rows": rows}
    output = pathlib.Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print("| backbone | size | batch | threads | sync BN | s/step (our pipeline) | CPU s/step | s/step (bare MG) | ratio |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['backbone']} | {row['image_size']} | {row['batch_size']} | {row['threads']} | "
              f"{row['use_sync_bn']} | {row['pipeline_seconds_per_step']} | {row['pipeline_cpu_seconds_per_step']} | "
              f"{row['bare_seconds_per_step']} | {row['overhead_ratio']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
