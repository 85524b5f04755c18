"""Share a trained classifier or grader as a BioImage Model Zoo package (``rdf.yaml``, format 0.5).

A package is one zip that bioimage.io accepts as an upload and that the model zoo's tools read:

    rdf.yaml          the description, built and validated with ``bioimageio.spec`` (model format 0.5)
    classifier.keras  a portable copy of the run's Keras 3 model for inference (``keras_v3`` weights; see
                      ``portable_model``): standard Keras layers only, saved uncompiled (no optimizer state or
                      training loss), so Keras alone, bioimageio.core and bioimage.io's test load it
    test_input.npy    uint8 [1, S, S, 3]: one real image of the run, as the model's input
    test_output.npy   float32 [1, C]: what our own prediction code computed for it
    sample_input.png, sample_output.tif   the test tensors as images (what bioimage.io previews)
    cover.png         the 2:1 picture bioimage.io shows (the test image with its answer, and QC)
    README.md         documentation built from the run folder (data, training, validation, limits)
    confusion_matrix.png, roc_curves.png  the run's QC figures (attachments), when QC was run

Packages go to ``<run>/bioimageio/<model name>.zip``; an existing file is never replaced: the next
export is ``<model name>_2.zip`` and so on (``package_path``).

Validation works offline: ``load_description(zip, perform_io_checks=True)`` reads every file of the
zip, checks its SHA-256 and the test tensors against the described axes. The URLs we cite are given
to it as known files (``known_files``), so it makes no HTTP request; those URLs are not checked.
It does not run the model (that needs ``bioimageio.core``, not a dependency); ``write_package`` does: the
packaged weights must reproduce the test output within the tolerance the package declares, as bioimage.io's
own test requires. ``tests/test_model_zoo.py`` also reloads the packaged ``.keras`` in a Python process that
never imported ``helpers`` (bioimageio.core 0.11's ``keras_v3`` backend reproduced a package in a one-off check).

This module is task-independent (no task package is imported): a task gives a ``PackageContent``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import pathlib
import re
import tempfile
from typing import Any, Callable, Sequence

import numpy as np

from helpers import errors

PACKAGE_FOLDER = "bioimageio"
DEFAULT_AUTHOR = "DL4Cells user"
DEFAULT_LICENCE = "MIT"
# The licences the notebook's dropdown offers (SPDX identifiers); any other SPDX identifier is accepted too.
LICENCE_CHOICES = ("MIT", "Apache-2.0", "BSD-3-Clause", "CC-BY-4.0", "CC0-1.0")
# What ``validate_package`` reports for a package whose every static check passed (``bioimageio.spec``
# gives "passed" only after a test run of the model by bioimageio.core; "failed" otherwise).
VALID_STATUSES = ("passed", "valid-format")
INPUT_ID = "image"
CHANNELS_RGB = ("red", "green", "blue")
COVER_SIZE_INCHES = (8.0, 4.0)  # bioimage.io shows covers at 2:1
UPLOAD_URL = "https://bioimage.io/#/upload"


@dataclasses.dataclass(frozen=True)
class Citation:
    """One ``cite`` entry: a text and a DOI or a URL (the spec needs one of the two)."""

    text: str
    doi: str | None = None
    url: str | None = None


@dataclasses.dataclass
class PackageContent:
    """Everything a task gives to build its package (``write_package``).

    Attributes:
        name: the model's name on bioimage.io (e.g. "DL4Cells classifier: cells_classifier").
        description: one or two plain sentences.
        authors: names; ``authors_from_text`` turns a form field into this.
        licence: SPDX identifier of the package's licence, e.g. "MIT".
        model: the Keras 3 model to package, made of Keras's own layers (``portable_model``); saved uncompiled
            into the package as ``weights_name``.
        test_input: uint8 [1, S, S, 3], RGB, one real image exactly as the model takes it.
        test_output: float32 [1, C], the model's output for it from our own prediction code.
        output_id: the output tensor's name, e.g. "probabilities".
        output_channels: C names, in output order (the class names for a classifier).
        input_description, output_description: what the tensors hold, in plain words.
        documentation: the README.md text (markdown; must have a "Validation" heading).
        cover_caption: the test image's caption on the cover (e.g. "Neutrophil (0.93)").
        cover_figure: a PNG shown on the cover's right half (e.g. the QC confusion matrix), or None
            (the test output's channels are then drawn as bars).
        attachments: extra files (QC figures) the documentation links to by file name.
        citations: papers and software to cite.
        tags: bioimage.io tags.
        task: e.g. "classification".
        limits: ``bias_risks_limitations`` fields (``known_biases``, ``risks``, ``limitations``,
            ``recommendations``) plus ``out_of_scope_use``.
        training: ``TrainingDetails`` fields (``training_epochs``, ``optimizer``...).
        extra_config: what our own tools need to use the model again (``config.dl4cells``).
        architecture: e.g. "EfficientNetB0" (``architecture_type``, at most 32 characters).
    """

    name: str
    description: str
    authors: list[str]
    licence: str
    model: Any
    test_input: np.ndarray
    test_output: np.ndarray
    output_id: str
    output_channels: list[str]
    input_description: str
    output_description: str
    documentation: str
    cover_caption: str
    cover_figure: pathlib.Path | None = None
    attachments: list[pathlib.Path] = dataclasses.field(default_factory=list)
    citations: list[Citation] = dataclasses.field(default_factory=list)
    tags: list[str] = dataclasses.field(default_factory=list)
    task: str = "classification"
    limits: dict[str, str] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    architecture: str = ""
    weights_name: str = "classifier.keras"


# bioimageio.spec 0.5.14 rejects a test output whose values all lie within +-1e-4 ("too small for reliable
# testing"), and an absolute reproducibility tolerance above 1 % of the output's maximum (not of its magnitude:
# an output with no positive value cannot be described). So a test output needs a maximum of at least this.
SMALLEST_TEST_VALUE = 1e-4
ABSOLUTE_TOLERANCE = 1e-3  # bioimageio.spec's default, lowered to 1 % of the test output's maximum when needed
RELATIVE_TOLERANCE = 1e-3


def testable(tensor: np.ndarray) -> bool:
    """True when bioimageio.spec accepts ``tensor`` as a test output: its maximum is at least SMALLEST_TEST_VALUE."""
    values = np.asarray(tensor, dtype=np.float64)
    return bool(values.size) and values.max() >= SMALLEST_TEST_VALUE


def absolute_tolerance(test_output: np.ndarray) -> float:
    """The reproducibility tolerance of ``test_output``: 1e-3, or 1 % of its maximum when that is smaller.

    bioimageio.spec computes its bound ``max * 0.01`` on the float32 test tensor, in float32 under NumPy 2
    (float64 under NumPy 1): the smaller of both roundings is taken, so the tolerance never exceeds the bound.
    """
    maximum = np.float32(np.max(test_output))
    one_percent = min(float(maximum * np.float32(0.01)), float(maximum) * 0.01)
    return float(min(ABSOLUTE_TOLERANCE, one_percent))


def authors_from_text(text: str) -> list[str]:
    """Author names from a form field ("Ada Lovelace, Alan Turing"; ";" works too); DEFAULT_AUTHOR when empty."""
    names = [name.strip() for name in re.split(r"[;,]", str(text or "")) if name.strip()]
    for name in names:
        if "/" in name:  # the spec forbids it in a name
            raise errors.ConfigError(f"Authors: {name!r} contains '/'. Write names separated by commas, "
                                     f"e.g. 'Ada Lovelace, Alan Turing'.")
    return names or [DEFAULT_AUTHOR]


DESCRIPTION_LIMIT = 1024  # characters of the spec's description field
NAME_LIMIT = 128  # characters of the spec's name field


def description_text(text: str, default: str) -> str:
    """The Model_description form field (``default`` when empty, shortened when the default is too long).

    Raises:
        ConfigError: the typed description is longer than the spec allows.
    """
    typed = " ".join(str(text or "").split())
    if len(typed) > DESCRIPTION_LIMIT:
        raise errors.ConfigError(f"Model_description: {len(typed)} characters; write at most {DESCRIPTION_LIMIT} "
                                 f"(one or two sentences; the README in the package holds the details).")
    return typed or default[:DESCRIPTION_LIMIT]


def licence_id(text: str) -> str:
    """The SPDX identifier typed in the Licence field (DEFAULT_LICENCE when empty); ConfigError when unknown."""
    _, v0_5 = _spec_modules()
    licence = str(text or "").strip() or DEFAULT_LICENCE
    try:
        v0_5.LicenseId(licence)
    except ValueError:
        raise errors.ConfigError(f"Licence: {licence!r} is not an SPDX licence identifier. Choose one of "
                                 f"{', '.join(LICENCE_CHOICES)} (or see spdx.org/licenses).") from None
    return licence


def project_url() -> str | None:
    """The helpers' repository URL from the installed package's metadata (``[project.urls] Repository``)."""
    try:
        entries = importlib.metadata.metadata("dl4cells-helpers").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [entry.split(",", 1)[1].strip() for entry in entries if entry.lower().startswith("repository,")]
    return found[0] if found else None


def package_path(run_root: str | pathlib.Path, model_name: str) -> pathlib.Path:
    """A zip path in ``<run>/bioimageio/`` that does not exist yet: ``<name>.zip``, else ``<name>_2.zip``...

    ``model_name`` is reduced to letters, digits, ``-``, ``_`` and ``.`` (a file name on every system).
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(model_name)).strip("._") or "model"
    folder = pathlib.Path(run_root) / PACKAGE_FOLDER
    candidate, number = folder / f"{stem}.zip", 1
    while candidate.exists():
        number += 1
        candidate = folder / f"{stem}_{number}.zip"
    return candidate


def channel_identifier(name: str) -> str:
    """``name`` as a tensor channel name: as it is when it is a Python-style identifier, else cleaned.

    bioimage.io shows channel names; class names such as "Neutrophil" stay as they are,
    "band cell" becomes "band_cell", "0" becomes "class_0".
    """
    cleaned = re.sub(r"\W+", "_", str(name), flags=re.ASCII).strip("_") or "class"
    return cleaned if re.match(r"[A-Za-z_]", cleaned) else f"class_{cleaned}"


def cover_image(image: np.ndarray, caption: str, path: pathlib.Path,
                figure: pathlib.Path | None = None, scores: dict[str, float] | None = None) -> pathlib.Path:
    """A 2:1 PNG: the test image with its caption on the left, a QC figure (or the scores as bars) on the right.

    Args:
        image: uint8 [H, W, 3] RGB.
        caption: e.g. "predicted: Neutrophil (0.93)".
        figure: a PNG to show on the right (e.g. the QC confusion matrix), or None.
        scores: {name: score} drawn as horizontal bars when there is no figure.
    """
    from helpers import figures

    fig = figures.new_figure(*COVER_SIZE_INCHES)
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.6))  # the QC figure is the wider one
    left.imshow(image)
    left.set_title(caption, fontsize=11)
    left.axis("off")
    if figure is not None and pathlib.Path(figure).is_file():
        import matplotlib.image

        right.imshow(matplotlib.image.imread(str(figure)))
        right.axis("off")
    elif scores:
        names = list(scores)
        right.barh(range(len(names)), [scores[name] for name in names], color="#4477aa")
        right.set_yticks(range(len(names)), names)
        right.invert_yaxis()
        right.set_xlim(min(0.0, *scores.values()), max(1.0, *scores.values()))  # a regression grade may exceed 1
        right.set_xlabel("model output")
    else:
        right.axis("off")
    return figures.save_figure(fig, path)


# Settings that hold the user's own paths: a public package names only the last folder of each.
PATH_SETTINGS = ("images_dir", "labels_csv", "model_path", "continue_from", "annotations_dir", "test_images_dir",
                 "test_annotations_dir", "test_labels_csv")


def public_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (a run's config as a dict) with every path reduced to its last part (no Drive layout published)."""
    return {key: (pathlib.PurePath(str(value)).name if key in PATH_SETTINGS and value else value)
            for key, value in settings.items()}


def existing_files(folder: pathlib.Path, names: Sequence[str]) -> list[pathlib.Path]:
    """The files ``folder / name`` that exist, in ``names`` order (e.g. the QC figures a package attaches)."""
    return [pathlib.Path(folder) / name for name in names if (pathlib.Path(folder) / name).is_file()]


def numbered_list(steps: Sequence[str]) -> str:
    """Markdown "1. ...", "2. ..." lines of ``steps``."""
    return "\n".join(f"{number}. {step}" for number, step in enumerate(steps, start=1))


def documentation(title: str, summary: str, sections: Sequence[tuple[str, str]]) -> str:
    """The package's README.md: a title, a summary paragraph, then one ``##`` section per (heading, markdown).

    bioimage.io expects a section whose heading contains "Validation" (how to check the model on new data).
    """
    parts = [f"# {title}", "", summary, ""]
    for heading, text in sections:
        parts += [f"## {heading}", "", text.strip(), ""]
    return "\n".join(parts)


def custom_layers(model) -> list[str]:
    """"module.Class" of every layer in ``model`` (nested models included) that Keras does not define, sorted.

    Such a layer (e.g. DL4Cells's own) loads only where its code is installed and imported: not in bioimage.io's
    test, bioimageio.core or plain Keras.
    """
    names = set()
    for layer in model.layers:
        module = type(layer).__module__
        if not module.startswith("keras."):
            names.add(f"{module}.{type(layer).__name__}")
        if isinstance(getattr(layer, "layers", None), list):  # a nested model: its layers count too
            names.update(custom_layers(layer))
    return sorted(names)


def portable_model(model, portable_layer: Callable[[Any], Any]):
    """A copy of ``model`` made of Keras's own layers only, computing the same outputs (the package's weights).

    Built with ``keras.models.clone_model``: each layer for which ``portable_layer(layer)`` returns a standard
    Keras layer is replaced by it; every other layer is the model's own object, so the copy shares its weights
    (nothing is copied; the run's ``.keras`` file is not touched). Nested models are cloned the same way.
    ``write_package`` checks that the copy reproduces the test output.

    Raises:
        ModelError: a layer Keras does not define is left (a task gave no replacement for it).
    """
    import keras

    def clone(layer):
        return portable_layer(layer) or layer

    portable = keras.models.clone_model(model, clone_function=clone, recursive=True)
    left = custom_layers(portable)
    if left:
        raise errors.ModelError(f"BioImage Model Zoo: the model holds layers only DL4Cells defines "
                                f"({', '.join(left)}) and no standard Keras replacement for them; the package "
                                f"would not load elsewhere. Report this to the DL4Cells maintainers.")
    return portable


def check_reproduces(content: PackageContent) -> None:
    """Raise ModelError unless ``content.model`` reproduces ``content.test_output`` from ``content.test_input``
    within the package's declared tolerance (``RELATIVE_TOLERANCE``, ``absolute_tolerance``), the test that
    bioimage.io runs on an uploaded package."""
    import keras

    # An eager call: one image, and no graph to trace (predict_on_batch would trace the whole network once).
    outputs = content.model(np.asarray(content.test_input, np.float32), training=False)
    reproduced = np.asarray(keras.ops.convert_to_numpy(outputs), np.float64)
    expected = np.asarray(content.test_output, np.float64)
    if reproduced.shape != expected.shape or not np.allclose(reproduced, expected, rtol=RELATIVE_TOLERANCE,
                                                               atol=absolute_tolerance(expected)):
        difference = np.max(np.abs(reproduced - expected)) if reproduced.shape == expected.shape else float("nan")
        raise errors.ModelError(f"BioImage Model Zoo: the packaged weights do not reproduce the test output "
                                f"(largest difference {difference:.3g}); the package was not written. Report this "
                                f"to the DL4Cells maintainers.")


def _spec_modules():
    """``bioimageio.spec`` and its model format 0.5 (imported only when a package is built)."""
    try:
        import bioimageio.spec as spec
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise errors.RuntimeProblem("bioimageio.spec is not installed: run cell 1.2 again, or "
                                    "pip install 'bioimageio.spec>=0.5.14,<0.6'.") from None
    return spec, v0_5


def _as_known_files(urls: Sequence[str]) -> dict[str, None]:
    """``known_files`` for the validator: each URL as written and as pydantic writes it ("https://keras.io/")."""
    import pydantic

    return {form: None for url in urls for form in (url, str(pydantic.HttpUrl(url)))}


def _known_urls(content: PackageContent) -> dict[str, None]:
    """The URLs the description names, as ``known_files``: validation then makes no HTTP request for them."""
    return _as_known_files([citation.url for citation in content.citations if citation.url])


def _sample_files(content: PackageContent, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The test tensors as image files (what bioimage.io previews): the input as PNG, the output as a TIFF."""
    import tifffile

    from helpers import images

    input_sample, output_sample = folder / "sample_input.png", folder / "sample_output.tif"
    images.write_image(input_sample, np.asarray(content.test_input[0], dtype=np.uint8))
    tifffile.imwrite(output_sample, np.asarray(content.test_output, dtype=np.float32))
    return input_sample, output_sample


def _tensors(content: PackageContent, folder: pathlib.Path, v0_5):
    """(input, output) tensor descriptions, with their test tensors saved as ``.npy`` in ``folder``."""
    size = int(content.test_input.shape[1])
    input_file, output_file = folder / "test_input.npy", folder / "test_output.npy"
    np.save(input_file, np.ascontiguousarray(content.test_input, dtype=np.uint8))
    np.save(output_file, np.ascontiguousarray(content.test_output, dtype=np.float32))
    input_sample, output_sample = _sample_files(content, folder)
    image = v0_5.InputTensorDescr(
        id=v0_5.TensorId(INPUT_ID), description=content.input_description,
        axes=[v0_5.BatchAxis(), v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=size),
              v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=size),
              v0_5.ChannelAxis(channel_names=[v0_5.Identifier(name) for name in CHANNELS_RGB])],
        test_tensor=v0_5.FileDescr(source=input_file), sample_tensor=v0_5.FileDescr(source=input_sample),
        data=v0_5.IntervalOrRatioDataDescr(type="uint8", range=(0, 255)),
        # The model takes the 0..255 values as float32; everything else (rescaling, ImageNet
        # normalisation) happens inside it, so no other preprocessing step may be applied.
        preprocessing=[v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32"))])
    output = v0_5.OutputTensorDescr(
        id=v0_5.TensorId(content.output_id), description=content.output_description,
        axes=[v0_5.BatchAxis(),
              v0_5.ChannelAxis(channel_names=[v0_5.Identifier(channel_identifier(name))
                                              for name in content.output_channels])],
        test_tensor=v0_5.FileDescr(source=output_file), sample_tensor=v0_5.FileDescr(source=output_sample),
        data=v0_5.IntervalOrRatioDataDescr(type="float32"))
    return image, output


def _weights(content: PackageContent, folder: pathlib.Path, v0_5):
    """The ``keras_v3`` weights entry: ``content.model`` saved into ``folder``, with this environment's Keras and
    TensorFlow versions (the uncompiled model: no optimizer state or training loss, which may be DL4Cells code;
    its layers are Keras's own when it is a ``portable_model``)."""
    weights = folder / content.weights_name
    content.model.save(weights)
    keras_version = importlib.metadata.version("keras")
    tensorflow_version = importlib.metadata.version("tensorflow")
    authors = [v0_5.Author(name=name) for name in content.authors]
    return v0_5.WeightsDescr(keras_v3=v0_5.KerasV3WeightsDescr(
        source=weights, keras_version=v0_5.Version(keras_version),
        backend=("tensorflow", v0_5.Version(tensorflow_version)), authors=authors))


def _config(content: PackageContent, v0_5):
    """``config``: the spec's model card fields (limits, training) and ours (``dl4cells``)."""
    limits = dict(content.limits)
    out_of_scope = limits.pop("out_of_scope_use", None)
    card = v0_5.BioimageioConfig(
        task=content.task, architecture_type=content.architecture[:32] or None,
        out_of_scope_use=out_of_scope,
        bias_risks_limitations=v0_5.BiasRisksLimitations(**limits),
        reproducibility_tolerance=[v0_5.ReproducibilityTolerance(
            output_ids=[v0_5.TensorId(content.output_id)], relative_tolerance=RELATIVE_TOLERANCE,
            absolute_tolerance=absolute_tolerance(content.test_output))],
        training=v0_5.TrainingDetails(**content.training),
        model_parameter_count=int(content.model.count_params()))
    return v0_5.Config(bioimageio=card, dl4cells=content.extra_config)


def build_description(content: PackageContent, folder: pathlib.Path):
    """The ``ModelDescr`` of ``content``; its documentation, cover and test tensors are written into ``folder``.

    Raises:
        ModelError: the spec rejects the description (the message lists its reasons).
    """
    spec, v0_5 = _spec_modules()
    documentation = folder / "README.md"
    documentation.write_text(content.documentation, encoding="utf-8")
    scores = dict(zip(content.output_channels, map(float, np.asarray(content.test_output).reshape(-1))))
    cover = cover_image(np.asarray(content.test_input[0], dtype=np.uint8), content.cover_caption, folder / "cover.png",
                        content.cover_figure, scores)
    # Every part is built inside the context: the cited URLs are known there, so no HTTP request checks them.
    with spec.ValidationContext(root=folder, perform_io_checks=True, known_files=_known_urls(content)):
        try:
            image, output = _tensors(content, folder, v0_5)
            return v0_5.ModelDescr(
                name=content.name[:NAME_LIMIT], description=content.description,
                authors=[v0_5.Author(name=name) for name in content.authors],
                cite=[v0_5.CiteEntry(text=citation.text, doi=v0_5.Doi(citation.doi) if citation.doi else None,
                                     url=citation.url) for citation in content.citations],
                license=v0_5.LicenseId(content.licence), documentation=v0_5.FileDescr(source=documentation),
                covers=[v0_5.FileDescr(source=cover)],
                attachments=[v0_5.FileDescr(source=path) for path in content.attachments],
                tags=list(content.tags), inputs=[image], outputs=[output], weights=_weights(content, folder, v0_5),
                config=_config(content, v0_5))
        except ValueError as error:  # pydantic's ValidationError: every rejected field on lines of its own
            reasons = " ".join(str(error).split())[:1000]
            raise errors.ModelError(f"BioImage Model Zoo: the description is not valid ({reasons}). "
                                    f"Check the Authors, Licence and Model_description fields of this cell.") from None


@contextlib.contextmanager
def _quiet_spec_warnings():
    """Hide bioimageio.spec's "Found mapping with 'source' and 'sha256'" UserWarnings inside the block.

    bioimageio.spec 0.5.14 warns so for every file of a package it writes or reads back from a zip (its own
    file descriptions, which it then reads correctly); in a notebook they would be red lines about nothing.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found mapping with 'source'", category=UserWarning)
        yield


def cited_urls(path: str | pathlib.Path) -> list[str]:
    """The URLs of the ``cite`` entries in a package zip's ``rdf.yaml`` (those validation would request)."""
    import zipfile

    import yaml

    with zipfile.ZipFile(path) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml").decode("utf-8")) or {}
    return [entry["url"] for entry in rdf.get("cite") or [] if entry.get("url")]


def validate_package(path: str | pathlib.Path):
    """Load a package zip with ``bioimageio.spec`` and every file check on; returns the ``ModelDescr``.

    Offline: the cited URLs are given to the validator as known files, so it requests none of them.

    Raises:
        ModelError: the package is not valid (with the validator's reason).
    """
    spec, _ = _spec_modules()
    with _quiet_spec_warnings():
        description = spec.load_description(str(path), perform_io_checks=True,
                                            known_files=_as_known_files(cited_urls(path)))
    validation = description.validation_summary
    if isinstance(description, spec.InvalidDescr) or validation.status not in VALID_STATUSES:
        reasons = "; ".join(f"{'.'.join(map(str, error.loc))}: {' '.join(error.msg.split())}"
                            for detail in validation.details for error in detail.errors)
        raise errors.ModelError(f"{path}: not a valid BioImage Model Zoo package ({validation.status}: "
                                f"{reasons[:1000]}). Export it again from the run folder.")
    return description


def write_package(content: PackageContent, destination: pathlib.Path) -> pathlib.Path:
    """Build, save and validate the package zip at ``destination`` (which must not exist yet).

    The zip is first written beside it under a new temporary name (``<name>.<random>.partial.zip``), validated,
    and only then given its name, so that a failed export leaves no package that looks finished.

    Raises:
        ModelError: ``destination`` exists, the model does not reproduce the test output (``check_reproduces``),
            or the description or the written zip is not valid.
    """
    spec, _ = _spec_modules()
    destination = pathlib.Path(destination)
    if destination.exists():
        raise errors.ModelError(f"{destination}: exists already and is never replaced. Export again: the next "
                                f"package gets a new name.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=destination.stem + ".", suffix=".partial.zip",
                                     delete=False) as handle:  # a new name: no earlier file is ever written over
        partial = pathlib.Path(handle.name)
    finished = False
    try:
        with tempfile.TemporaryDirectory(prefix="bioimageio_") as folder, _quiet_spec_warnings():
            description = build_description(content, pathlib.Path(folder))
            # save_bioimageio_package reloads the zip it wrote under a new root, which forgets the known URLs:
            # its own check stays static here, and validate_package below checks every file, offline.
            with spec.ValidationContext(perform_io_checks=False):
                spec.save_bioimageio_package(description, output_path=partial)
        validate_package(partial)
        check_reproduces(content)  # after the static checks: their reasons come first
        if destination.exists():  # written by another export meanwhile
            raise errors.ModelError(f"{destination}: appeared while this package was written. Run this cell again: "
                                    f"the package gets a new name.")
        partial.rename(destination)
        finished = True
    finally:
        if not finished:
            partial.unlink(missing_ok=True)  # our own unfinished file, never the user's
    return destination


def summary(path: pathlib.Path) -> str:
    """What the notebook prints after an export: where the zip is, its size, the validator's verdict, what next."""
    spec, _ = _spec_modules()
    return (f"BioImage Model Zoo package: {path} ({pathlib.Path(path).stat().st_size / 1e6:.1f} MB), checked with "
            f"bioimageio.spec {spec.__version__}: valid (model format 0.5). Share it by uploading it at {UPLOAD_URL}; "
            f"anyone can reload it with Keras (README.md in the zip says how).")
