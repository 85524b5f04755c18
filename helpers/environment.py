"""Where the notebook runs: Colab or not, Google Drive, the GPU, and the versions in use.

Everything here is cheap and safe to call from any cell: versions are read from the installed
package metadata (``importlib.metadata``), so asking for them never imports TensorFlow. Only
``gpu_check`` may import TensorFlow, and only when ``nvidia-smi`` cannot answer.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys

from helpers import errors

DRIVE_MOUNT_POINT = pathlib.Path("/content/gdrive")
DRIVE_FOLDER = DRIVE_MOUNT_POINT / "MyDrive"
PACKAGE_NAME = "dl4cells-helpers"
REQUIREMENTS_PATH = pathlib.Path(__file__).resolve().parents[1] / "requirements.txt"

# Distribution names whose versions go into every report, in this order.
REPORTED_PACKAGES = ("tensorflow", "tf-models-official", "tf-keras", "keras", "numpy", "pycocotools",
                     "scikit-learn", "fpdf2", "opencv-python-headless")
NOT_INSTALLED = "not installed"
NO_GPU_MESSAGE = ("No GPU: training will be slow; on Colab choose Runtime > Change runtime type > GPU "
                  "(e.g. T4), then run the notebook again from the top.")
NVIDIA_SMI_TIMEOUT_SECONDS = 15


def in_colab() -> bool:
    """True inside a Google Colab runtime.

    Colab's kernel imports ``google.colab`` at start-up and its runtime sets ``COLAB_RELEASE_TAG``;
    merely having the ``google-colab`` package installed elsewhere does not count.
    """
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def prepare_storage(local_folder: str | pathlib.Path | None = None) -> pathlib.Path:
    """Make the user's files reachable and return the base folder they live under.

    On Colab, Google Drive is mounted at ``/content/gdrive`` (Colab asks the user to allow it)
    and ``/content/gdrive/MyDrive`` is returned. Elsewhere nothing is mounted: the local
    ``local_folder`` (default: the current folder) is returned.

    Raises:
        ConfigError: ``local_folder`` does not exist.
    """
    if in_colab():
        if not DRIVE_FOLDER.is_dir():
            from google.colab import drive  # only exists on Colab

            drive.mount(str(DRIVE_MOUNT_POINT))
        print(f"Google Drive is connected: your files are under {DRIVE_FOLDER}")
        return DRIVE_FOLDER
    folder = pathlib.Path(local_folder).expanduser() if local_folder else pathlib.Path.cwd()
    if not folder.is_dir():
        raise errors.ConfigError(f"local_folder: {folder} does not exist. Type an existing folder, "
                                 f"or leave it empty to use the current folder.")
    print(f"Not running on Colab: local folders are used (base folder {folder}). "
          f"Type full local paths in the forms.")
    return folder


@dataclasses.dataclass
class GpuStatus:
    """Whether a GPU can be used, for the user and for the reports.

    Attributes:
        available: True when at least one GPU was found.
        name: the first GPU's name (e.g. ``"Tesla T4"``), or None.
        message: one plain-language sentence: which GPU, or what to do without one.
    """

    available: bool
    name: str | None
    message: str


def _nvidia_smi_gpus() -> list[tuple[str, str]] | None:
    """``[(name, memory), ...]`` from ``nvidia-smi``, or None when it is absent or fails."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        completed = subprocess.run([executable, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None  # e.g. "NVIDIA-SMI has failed because it couldn't communicate with the driver"
    rows = [line.split(",") for line in completed.stdout.splitlines() if line.strip()]
    return [(row[0].strip(), row[1].strip() if len(row) > 1 else "") for row in rows]


def _tensorflow_gpus() -> list[str] | None:
    """GPU device names TensorFlow sees, or None when TensorFlow is not installed."""
    if "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow") is None:
        return None
    try:
        import tensorflow as tf  # local: only needed when nvidia-smi cannot answer
    except ImportError:
        return None  # a broken install is reported by the installation check, not here
    return [device.name for device in tf.config.list_physical_devices("GPU")]


def gpu_check() -> GpuStatus:
    """Find a GPU: ``nvidia-smi`` first; else TensorFlow's device list (imported only if installed).

    Returns:
        The status; ``message`` says which GPU, or that training will be slow and how to get one.
    """
    gpus = _nvidia_smi_gpus()
    if gpus:
        name, memory = gpus[0]
        extra = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
        memory_text = f", {memory}" if memory else ""
        return GpuStatus(True, name, f"GPU available: {name}{memory_text}{extra}.")
    tensorflow_gpus = _tensorflow_gpus()
    if tensorflow_gpus:
        return GpuStatus(True, tensorflow_gpus[0], f"GPU available to TensorFlow: {tensorflow_gpus[0]}.")
    return GpuStatus(False, None, NO_GPU_MESSAGE)


def _installed_version(distribution: str) -> str | None:
    """Installed version of a distribution (pip name), or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tensorflow_cuda_version() -> str | None:
    """CUDA version TensorFlow was built with, read from its ``build_info.py`` without importing it."""
    try:
        files = importlib.metadata.files("tensorflow") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).replace("\\", "/").endswith("tensorflow/python/platform/build_info.py"):
            try:
                text = file.locate().read_text(encoding="utf-8")
            except OSError:
                return None
            match = re.search(r"['\"]cuda_version['\"]\s*[:,]\s*['\"]([^'\"]*)['\"]", text)
            return match.group(1) if match and match.group(1) else None
    return None


def _gpu_driver_version() -> str | None:
    """NVIDIA driver version from ``nvidia-smi``, or None."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        completed = subprocess.run([executable, "--query-gpu=driver_version", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
    return lines[0] if completed.returncode == 0 and lines else None


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the packages results depend on, for the reports.

    Read from package metadata: TensorFlow is not imported. Packages that are missing read
    ``"not installed"``. ``"cuda (tensorflow build)"`` and ``"gpu driver"`` appear only where known.

    Returns:
        ``{"python": "3.11.7", "platform": "Linux-...", "tensorflow": "2.20.0", ...}``.
    """
    result = {"python": platform.python_version(), "platform": platform.platform()}
    for distribution in REPORTED_PACKAGES:
        result[distribution] = _installed_version(distribution) or NOT_INSTALLED
    cuda = _tensorflow_cuda_version()
    if cuda:
        result["cuda (tensorflow build)"] = cuda
    driver = _gpu_driver_version()
    if driver:
        result["gpu driver"] = driver
    return result


def _requirement_lines(requirements_path: str | pathlib.Path | None) -> list[str] | None:
    """Requirement strings from a requirements file, or from the installed package's metadata."""
    path = pathlib.Path(requirements_path) if requirements_path is not None else REQUIREMENTS_PATH
    if path.is_file():
        lines = []
        for raw_line in path.read_text(encoding="utf-8").splitlines():
            line = raw_line.split(" #", 1)[0].strip()
            if line and not line.startswith(("#", "-")):  # options such as -r / --index-url are not packages
                lines.append(line)
        return lines
    if requirements_path is not None:
        raise errors.ConfigError(f"{path}: requirements file not found. Give the path of requirements.txt.")
    try:
        return list(importlib.metadata.requires(PACKAGE_NAME) or [])
    except importlib.metadata.PackageNotFoundError:
        return None


def check_requirements(requirements_path: str | pathlib.Path | None = None) -> list[str]:
    """Compare installed versions with the tested ones (``requirements.txt``).

    Args:
        requirements_path: a requirements file; default: ``requirements.txt`` at the repository
            root, or, for a pip-installed package, the requirements recorded in its metadata.

    Returns:
        One plain line per mismatch, e.g. ``"numpy 2.4.0 installed, tested with numpy>=1.26,<2.4"``;
        empty when everything matches.
    """
    from packaging import requirements as packaging_requirements  # local: only this function needs it
    from packaging import version as packaging_version

    lines = _requirement_lines(requirements_path)
    if lines is None:
        return [f"requirements.txt not found next to the helpers package and {PACKAGE_NAME} is not "
                f"installed: the installed versions could not be checked."]
    problems = []
    for line in lines:
        try:
            requirement = packaging_requirements.Requirement(line)
        except packaging_requirements.InvalidRequirement:
            problems.append(f"could not read the requirement '{line}'")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # e.g. a requirement for another platform or an optional extra
        installed = _installed_version(requirement.name)
        tested = line.split(";", 1)[0].strip()
        if installed is None:
            problems.append(f"{requirement.name} not installed, tested with {tested}")
        elif requirement.specifier:
            try:
                matches = requirement.specifier.contains(installed, prereleases=True)
            except packaging_version.InvalidVersion:
                matches = False  # a version string pip itself could not compare
            if not matches:
                problems.append(f"{requirement.name} {installed} installed, tested with {tested}")
    return problems
