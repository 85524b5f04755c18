"""``dl4cells``: a notebook's run from a command line (a lab workstation, a cluster node, any terminal).

    dl4cells TASK config [--preset default|quick] > my_run.yaml
    dl4cells TASK train --config my_run.yaml
    dl4cells TASK qc --model RUN_FOLDER [--images DIR (--annotations PATH | --labels CSV)]
    dl4cells TASK predict --model RUN_FOLDER --images DIR --output DIR [--workers N | --scheduler ADDRESS]

TASK is ``detection``, ``classification`` or ``grading``. Every command calls the steps a notebook's
cells call (``helpers.<task>.workflow``: the session's data check, split, augmentation, backbone and
training; ``quality_control``; ``predict``) with the same config dataclass, so a command-line run
writes the same run folder, PDFs and errors, and resumes like the notebook. A user error
(``helpers.errors.HelpersError``) is one line on stderr and exit status 2
(``DL4CELLS_FULL_TRACEBACK=1`` shows its traceback). Also ``python -m helpers.cli``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import sys
import textwrap
import typing
from types import ModuleType
from typing import Any, Sequence

import yaml

from helpers import config as config_module
from helpers import errors
from helpers import workflow as shared_workflow

USER_ERROR_EXIT_CODE = 2
# Messages are shared with the notebooks, which name their forms and fields; on the command line the
# same things are the settings file's keys and the command's options (the user never saw form 1.1).
COMMAND_LINE_WORDS = (
    (re.escape(shared_workflow.DRIVE_HINT), ""),
    (r"\bin form 1\.1\b", "in the settings file (--config)"),
    (r"\bform 1\.1\b", "the settings file (--config)"),
    (r"\bTraining_images\b", "images_dir"),
    (r"\bTraining_annotations\b", "annotations_dir"),
    (r"\bLabels_csv\b", "labels_csv"),
    (r"\bTest_images\b", "--images"),
    (r"\bTest_annotations\b", "--annotations"),
    (r"\bTest_labels_csv\b", "--labels"),
    (r"\(section 4\)", "(dl4cells TASK train)"),
)
INTERRUPTED_EXIT_CODE = 130
TASKS = ("detection", "classification", "grading")
COMMENT_WIDTH = 100
# How ``qc`` names the labels of test images, and whether test images need them (classification can read
# the class from one subfolder per class).
TEST_LABELS = {"detection": ("annotations", True), "classification": ("labels", False), "grading": ("labels", True)}

DESCRIPTION = """\
Train, check and use a DL4Cells model from a terminal: the same steps, settings, run folder and PDF
reports as the notebooks, on your own machine (your images never leave it).

TASK is detection, classification or grading:
  dl4cells TASK config > my_run.yaml         print every setting with its help; fill in the folders
  dl4cells TASK train --config my_run.yaml   check the data, train, export the model; everything goes
                                             into the run folder (training_report.pdf); again = resume
  dl4cells TASK qc --model RUN_FOLDER --images DIR (--annotations PATH | --labels CSV)
                                             score the model on labelled test images (qc_report.pdf)
  dl4cells TASK predict --model RUN_FOLDER --images DIR --output DIR
                                             use the model on new images; the results go into DIR
                                             (--workers N or --scheduler ADDRESS: many images, resumable)

Example:
  dl4cells classification config --preset quick > my_run.yaml
  dl4cells classification train --config my_run.yaml
  dl4cells classification predict --model models/my_run --images new_images --output results
Help on one command: dl4cells classification train --help
"""


@dataclasses.dataclass(frozen=True)
class TaskSteps:
    """What the command line needs of one task's notebook steps.

    Attributes:
        workflow: the task's ``helpers.<task>.workflow`` module (what the notebook's cells call).
        session_class: its session (``workflow.Session`` subclass).
        config_class: its config dataclass.
        preview_step: the session method of the notebook's section 3.2 (augmentation or preprocessing preview).
        required_fields: the config fields a training run cannot do without (the data and its labels).
    """

    workflow: ModuleType
    session_class: type
    config_class: type
    preview_step: str
    required_fields: tuple[str, ...]


def task_steps(task: str) -> TaskSteps:
    """The notebook steps of ``task``, imported here so that a command loads only its own task package."""
    if task == "detection":
        from helpers.detection import workflow

        return TaskSteps(workflow, workflow.DetectionSession, workflow.DetectionConfig, "augment",
                         ("images_dir", "annotations_dir"))
    if task == "classification":
        from helpers.classification import workflow

        return TaskSteps(workflow, workflow.ClassificationSession, workflow.ClassificationConfig,
                         "preview_augmentation", ("images_dir",))
    from helpers.grading import workflow

    return TaskSteps(workflow, workflow.GradingSession, workflow.GradingConfig, "preview_preprocessing",
                     ("images_dir", "labels_csv"))


# ----- config ---------------------------------------------------------------------------------
def _field_rule(item: dataclasses.Field, expected: Any) -> str:
    """The allowed values of a field in words: "one of: a, b", "whole number, 1 to 100", "true or false" ("" for text)."""
    choices, minimum, maximum = (item.metadata.get(key) for key in ("choices", "minimum", "maximum"))
    if choices:
        return "one of: " + ", ".join(map(str, choices))
    if expected is bool:
        return "true or false"
    kind = {int: "whole number", float: "number"}.get(expected, "")
    if kind and minimum is not None and maximum is not None:
        return f"{kind}, {config_module.setting_text(minimum)} to {config_module.setting_text(maximum)}"
    return kind


def _yaml_line(name: str, value: Any) -> str:
    """``name: value`` as YAML writes it (``''`` for empty text), on one line."""
    return yaml.safe_dump({name: value}, sort_keys=False, allow_unicode=True, width=10**9).strip()


def config_template(config_class: type, preset: str, task: str) -> str:
    """The settings file ``dl4cells TASK config`` prints: every field with its help and the preset's value.

    The data fields (``helpers.config.is_data_field``: folders, CSV columns, run name, preset) are
    settings to fill in; every other field is a comment holding the preset's value, so that the file
    as written loads back (``load_run_config``) to exactly the preset's config, and a changed
    ``preset:`` line changes them all.
    """
    config = config_module.config_from_form(config_class, preset)
    types = typing.get_type_hints(config_class)
    lines = [f"# DL4Cells {task} run settings ({config_class.__name__}), preset {preset!r}.",
             "# 1. Fill in the folders and the run name below (model_path/model_name becomes the run folder);",
             "#    a path is absolute, or relative to the folder you run dl4cells in.",
             "# 2. Every other setting is commented out (#) and takes the preset's value shown; to change one,",
             "#    delete the '# ' in front of it and edit the value.",
             f"# 3. Train:  dl4cells {task} train --config THIS_FILE",
             "#    The same command again resumes an interrupted run (same model_name and settings)."]
    for item in dataclasses.fields(config):
        rule = _field_rule(item, types[item.name])
        help_text = item.metadata.get("help", "") + (f" ({rule})" if rule else "")
        lines += [""] + textwrap.wrap(help_text, COMMENT_WIDTH, initial_indent="# ", subsequent_indent="# ",
                                      break_long_words=False, break_on_hyphens=False)
        line = _yaml_line(item.name, getattr(config, item.name))
        lines.append(line if config_module.is_data_field(item.name) else f"# {line}")
    return "\n".join(lines) + "\n"


def load_run_config(config_class: type, path: str | pathlib.Path) -> Any:
    """The validated config of a settings file written by ``config_template`` (and edited by the user).

    A setting that is missing, empty or commented out takes the value of the file's ``preset``
    (``default`` when none is given); unknown settings are refused with the closest name.

    Raises:
        ConfigError: the file is missing, is not YAML settings, or a setting is wrong (named with the file).
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise errors.ConfigError(f"--config: {path} does not exist. Write a settings file with "
                                 f"'dl4cells TASK config > {path.name}' and fill in its folders.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise errors.ConfigError(f"{path}: not readable as settings{where}: {getattr(error, 'problem', error)}. "
                                 f"Each setting is one line 'name: value'; check the indentation.") from None
    if not isinstance(values, dict):
        raise errors.ConfigError(f"{path}: holds no settings ('name: value' lines). Write one with 'dl4cells TASK config'.")
    values = {str(key): value for key, value in values.items()}  # a key YAML reads as a number is refused by name
    preset = values.pop("preset", None) or "default"
    try:
        return config_module.config_from_form(config_class, str(preset), **values)
    except errors.ConfigError as error:
        raise errors.ConfigError(f"{path}: {error}") from None


def _require_data_fields(steps: TaskSteps, config: Any, path: str) -> None:
    """ConfigError naming the settings file and the first data field left empty or pointing nowhere."""
    for name in steps.required_fields + ("model_path", "model_name"):
        value = str(getattr(config, name)).strip()
        help_text = steps.config_class.__dataclass_fields__[name].metadata.get("help", "")
        if not value:
            raise errors.ConfigError(f"{path}: {name} is empty. Fill it in ({help_text}).")
        if name in steps.required_fields and not pathlib.Path(value).expanduser().exists():
            raise errors.DatasetError(f"{path}: {name}: {value} does not exist. Correct the path ({help_text}).")


# ----- commands -------------------------------------------------------------------------------
def run_config(arguments: argparse.Namespace) -> int:
    """``config``: print the settings file of the chosen preset on stdout."""
    steps = task_steps(arguments.task)
    if hasattr(sys.stdout, "reconfigure"):  # the help texts hold ±, ·: UTF-8 in the file, whatever the terminal's locale
        sys.stdout.reconfigure(encoding="utf-8")
    sys.stdout.write(config_template(steps.config_class, arguments.preset, arguments.task))
    return 0


def run_train(arguments: argparse.Namespace) -> int:
    """``train``: the notebook's sections 3.1–4 on the settings file (a new run, or the resumed one)."""
    steps = task_steps(arguments.task)
    config = load_run_config(steps.config_class, arguments.config)
    _require_data_fields(steps, config, arguments.config)
    form_fields = {key: value for key, value in config_module.config_to_dict(config).items() if key != "preset"}
    session = shared_workflow.open_session(steps.session_class, steps.config_class, config.preset, form_fields,
                                           defaults_mean_preset=False)
    session.check_data()
    getattr(session, steps.preview_step)()
    session.prepare_backbone()
    session.train()
    print(f"Run folder: {session.run.root} (exported_model/, training_report.pdf, config.yaml, history.csv, plots/)")
    return 0


def _existing_folder(option: str, folder: str) -> None:
    """DatasetError naming the option unless ``folder`` is a folder."""
    if not pathlib.Path(folder).expanduser().is_dir():
        raise errors.DatasetError(f"{option}: folder {folder} does not exist. Check the path.")


def run_qc(arguments: argparse.Namespace) -> int:
    """``qc``: the notebook's section 5 (scores, figures, qc report in the run folder)."""
    steps = task_steps(arguments.task)
    labels_option, labels_required = TEST_LABELS[arguments.task]
    labels, option = getattr(arguments, labels_option) or "", f"--{labels_option}"
    if arguments.images:
        _existing_folder("--images", arguments.images)
        if labels_required and not labels:
            raise errors.ConfigError(f"{option}: missing. Test images need their {labels_option} "
                                     f"(give {option} PATH with --images).")
    elif labels:
        raise errors.ConfigError(f"{option}: given without --images. Give the folder of the test images too, "
                                 f"or neither to score the run's validation images.")
    labels_argument = "test_annotations" if arguments.task == "detection" else "test_labels_csv"
    result = steps.workflow.quality_control("", "", test_images=arguments.images or "",
                                            other_model_folder=arguments.model, **{labels_argument: labels})
    result.show()
    return 0


def run_predict_job(arguments: argparse.Namespace, steps: TaskSteps) -> int:
    """``predict --workers N | --scheduler ADDRESS`` or a glob / list file: a resumable job (``helpers.prediction_jobs``)."""
    from helpers import prediction_jobs

    if arguments.workers < 0:
        raise errors.ConfigError(f"--workers: {arguments.workers} is below 0. Give the number of worker processes "
                                 f"(0 = in this process, 2 or more on a machine with several cores or GPUs).")
    extra = {"output_dir": arguments.output, "images": arguments.images,
             "object_size_ratio": arguments.object_size_ratio} if arguments.task == "detection" else {}
    predictor = steps.workflow.prediction_job(arguments.model, **extra)
    result = prediction_jobs.run_job(predictor, arguments.images, arguments.output, workers=arguments.workers,
                                     scheduler=arguments.scheduler)
    result.show()
    return 0


def run_predict(arguments: argparse.Namespace) -> int:
    """``predict``: the notebook's section 6 on a folder of images; results in a new or empty folder."""
    steps = task_steps(arguments.task)
    images = arguments.images
    if (arguments.workers or arguments.scheduler or pathlib.Path(images).expanduser().is_file()
            or any(character in images for character in "*?[")):  # a list file or a pattern
        return run_predict_job(arguments, steps)
    _existing_folder("--images", arguments.images)
    output = pathlib.Path(arguments.output).expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise errors.ConfigError(f"--output: {output} already exists and is not an empty folder. Give a new folder "
                                 f"name; nothing in it was touched.")
    extra = {"object_size_ratio": arguments.object_size_ratio} if arguments.task == "detection" else {}
    result = steps.workflow.predict("", "", images_dir=arguments.images, results_folder=str(output),
                                    other_model_folder=arguments.model, **extra)
    result.show()
    return 0


# ----- parser ---------------------------------------------------------------------------------
def _command(commands: Any, name: str, summary: str, description: str, example: str, function: Any
             ) -> argparse.ArgumentParser:
    """A command's parser: ``summary`` in the task's list, ``description`` and ``example`` on its --help."""
    parser = commands.add_parser(name, help=summary, description=textwrap.fill(description, COMMENT_WIDTH),
                                 epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(function=function)
    return parser


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN_FOLDER",
                        help="the run folder of a trained model (<model_path>/<model_name>)")


def _add_config_command(commands: Any, task: str) -> None:
    parser = _command(commands, "config", "print a settings file to fill in",
                      f"Print every {task} setting with its help text and the preset's value (YAML) on the screen; "
                      f"redirect it into a file, fill in the folders, then train with it.",
                      f"dl4cells {task} config --preset quick > my_run.yaml", run_config)
    parser.add_argument("--preset", default="default", choices=("default", "quick"),
                        help="'default' for a real model; 'quick' checks in minutes that everything runs "
                             "(a small network, 2 epochs). Default: default")


def _add_train_command(commands: Any, task: str) -> None:
    parser = _command(
        commands, "train", "check the data, train, export the model, write the training report",
        f"Run the {task} notebook's sections 3 and 4: check the data (problems listed), split it, preview the "
        f"augmentation, prepare the pretrained weights, train, export the model and write training_report.pdf. "
        f"Everything goes into the run folder <model_path>/<model_name> of the settings file; nothing is written "
        f"into your data folders. Run the same command again to resume an interrupted run.",
        f"dl4cells {task} config > my_run.yaml   (then fill in its folders)\n  dl4cells {task} train --config my_run.yaml",
        run_train)
    parser.add_argument("--config", required=True, metavar="SETTINGS.yaml",
                        help=f"the settings file written by 'dl4cells {task} config' and filled in")


def _add_qc_command(commands: Any, task: str) -> None:
    labels_option = TEST_LABELS[task][0]
    labels_help = {"detection": "their annotations: a folder of PASCAL VOC .xml files, or one COCO or BBBC041 .json file",
                   "classification": "their labels CSV (filename,label); leave it out when the test images are in "
                                     "one subfolder per class",
                   "grading": "their grades CSV (with the columns named in the run's settings)"}[task]
    example_labels = "test/annotations" if labels_option == "annotations" else "test/labels.csv"
    parser = _command(
        commands, "qc", "score a trained model on labelled test images (qc_report.pdf)",
        f"Run the {task} notebook's section 5: predict the test images, compare with their {labels_option}, print "
        f"the scores and write the figures, the tables and qc_report.pdf into the run folder (RUN_FOLDER/qc/). "
        f"Without --images the run's validation images are scored (optimistic: they chose the kept epoch).",
        f"dl4cells {task} qc --model models/my_run --images test/images --{labels_option} {example_labels}", run_qc)
    _add_model_option(parser)
    parser.add_argument("--images", default="", metavar="DIR", help="folder of labelled test images never used in training")
    parser.add_argument(f"--{labels_option}", default="", metavar="PATH", help=labels_help)


def _add_predict_command(commands: Any, task: str) -> None:
    writes = {"detection": "predictions.csv, counts.csv, voc/ (boxes with scores), coco_results.json, overlays/ and "
                           "files for QuPath, Fiji, napari and Label Studio",
              "classification": "predictions.csv (a label and scores per image) and examples.png",
              "grading": "predictions.csv (a grade and scores per image) and examples.png"}[task]
    parser = _command(
        commands, "predict", "use a trained model on new images",
        f"Run the {task} notebook's section 6 on every image of a folder and write {writes} into the output "
        f"folder (new or empty; your image folder is only read).",
        f"dl4cells {task} predict --model models/my_run --images new_images --output results", run_predict)
    _add_model_option(parser)
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of the images to predict, or a pattern "
                        "such as 'screen/**/*.tif' (quoted), or a text file listing one image path per line")
    parser.add_argument("--output", required=True, metavar="DIR", help="new or empty folder for the results")
    _add_job_options(parser)
    if task == "detection":
        parser.add_argument("--object-size-ratio", default=1.0, type=float, metavar="RATIO",
                            help="how much larger the objects are than in the training images (2 = twice as large, "
                                 "e.g. another objective). Default: 1")


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--scheduler``: prediction as a resumable Dask job (``helpers.prediction_jobs``)."""
    parser.add_argument("--workers", default=0, type=int, metavar="N",
                        help="predict with N worker processes on this machine (one model each; Dask). With --workers, "
                             "--scheduler, or --images given as a pattern ('folder/*.tif') or a text file listing one "
                             "image per line, each image's result is saved under per_image/ as it is done, the results "
                             "files are merged at the end (classification and grading: without examples.png), and the "
                             "same command again continues a stopped job. Default: 0 (this process)")
    parser.add_argument("--scheduler", default="", metavar="ADDRESS",
                        help="predict on the workers of a running Dask scheduler: its address, e.g. tcp://node12:8786, "
                             "or its scheduler file (.json); a Slurm cluster: see docs/cluster.md")


def build_parser() -> argparse.ArgumentParser:
    """``dl4cells TASK COMMAND [options]``."""
    parser = argparse.ArgumentParser(prog="dl4cells", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", required=True, metavar="TASK", help="detection, classification or grading")
    for task in TASKS:
        task_parser = tasks.add_parser(task, help=f"{task} models", description=f"The {task} commands.",
                                       formatter_class=argparse.RawDescriptionHelpFormatter,
                                       epilog=f"example:\n  dl4cells {task} train --help")
        commands = task_parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                              help="config, train, qc or predict")
        _add_config_command(commands, task)
        _add_train_command(commands, task)
        _add_qc_command(commands, task)
        _add_predict_command(commands, task)
    return parser


def command_line_wording(message: str) -> str:
    """``message`` with the notebook's form and field names replaced by the settings file's keys and options."""
    for pattern, replacement in COMMAND_LINE_WORDS:
        message = re.sub(pattern, replacement, message)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (0 done, 2 a user error, 130 interrupted)."""
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.function(arguments)
    except errors.HelpersError as error:
        if os.environ.get(errors.FULL_TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        print(f"{type(error).__name__}: {command_line_wording(str(error))}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    except KeyboardInterrupt:
        print("Interrupted. Run the same command again to resume (training continues after the last finished "
              "epoch; predict --workers/--scheduler after the last finished image).", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
