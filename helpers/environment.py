"""Where the notebook runs: Colab or not, Google Drive, the GPU, and the versions in use.

Everything here is cheap and safe to call from any cell: versions are read from the installed
package metadata (``importlib.metadata``), so asking for them never imports TensorFlow. Only
``gpu_check`` may import TensorFlow, and only when ``nvidia-smi`` cannot answer.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
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
REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Distribution names whose versions go into every report, in this order.
REPORTED_PACKAGES = ("tensorflow", "tf-models-official", "tf-keras", "keras", "numpy", "pycocotools",
                     "scikit-learn", "fpdf2", "opencv-python-headless")
NOT_INSTALLED = "not installed"
NO_GPU_MESSAGE = ("No GPU: training will be slow; on Colab choose Runtime > Change runtime type > GPU "
                  "(e.g. T4), then run the notebook again from the top.")
NO_TENSORFLOW_MESSAGE = ("TensorFlow is not installed in this runtime (Colab's TPU runtime has none, and "
                         "these notebooks cannot use a TPU): choose Runtime > Change runtime type > T4 GPU, "
                         "then run the notebook again from the top.")
RESTART_MESSAGE = "Runtime → Restart session, then run the notebook again from the top."
# The same advice off Colab (a lab workstation or a cluster node: Jupyter or the dl4cells command).
GPU_ON_A_WORKSTATION = ('On a workstation with an NVIDIA GPU: check that nvidia-smi lists it, install TensorFlow '
                        'with its CUDA libraries in this environment (pip install "tensorflow[and-cuda]>=2.20,<2.21", '
                        'Linux), then restart Jupyter\'s kernel or run the dl4cells command again.')
NO_GPU_MESSAGE_LOCAL = "No GPU: training will be slow. " + GPU_ON_A_WORKSTATION
NO_TENSORFLOW_MESSAGE_LOCAL = ("TensorFlow is not installed in this environment: run pip install -r requirements.txt "
                               "(README, \"Beyond Colab\"), then restart Jupyter's kernel or run the command again.")
RESTART_MESSAGE_LOCAL = "Kernel → Restart in Jupyter (or run the dl4cells command again), then run the notebook again from the top."


def restart_message() -> str:
    """How to restart the Python session here: Colab's menu on Colab, Jupyter's kernel elsewhere."""
    return RESTART_MESSAGE if in_colab() else RESTART_MESSAGE_LOCAL
NVIDIA_SMI_TIMEOUT_SECONDS = 15
GIT_TIMEOUT_SECONDS = 10
# Modules whose loaded copy must be the installed one: (import name, distributions that provide it).
# After pip replaces a package that was already imported, Python keeps running the old copy.
LOADED_MODULES = (("helpers", (PACKAGE_NAME,)), ("numpy", ("numpy",)), ("tensorflow", ("tensorflow",)), ("keras", ("keras",)),
                  ("tf_keras", ("tf-keras",)),
                  ("cv2", ("opencv-python-headless", "opencv-python", "opencv-contrib-python")),
                  ("ipywidgets", ("ipywidgets",)), ("sklearn", ("scikit-learn",)))


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
        import tensorflow as tf  # local: the GPU check is the first cell that needs it
    except ImportError:
        return None  # a broken install is reported by the installation check, not here
    return [device.name for device in tf.config.list_physical_devices("GPU")]


def gpu_status(nvidia_gpus: list[tuple[str, str]] | None, tensorflow_gpus: list[str] | None,
               colab: bool | None = None) -> GpuStatus:
    """What to tell the user, from what ``nvidia-smi`` and TensorFlow each see.

    TensorFlow decides: a GPU that ``nvidia-smi`` lists but TensorFlow cannot use (a CUDA or
    driver mismatch, a runtime whose TensorFlow was replaced) trains nothing faster.

    Args:
        nvidia_gpus: ``[(name, memory), ...]`` from ``nvidia-smi``, or None when it is absent or failed.
        tensorflow_gpus: TensorFlow's GPU device names, or None when TensorFlow is not installed.
        colab: whether this is Colab (None = ``in_colab()``): Colab's menus there, a workstation's
            installation steps elsewhere.
    """
    colab = in_colab() if colab is None else colab
    if tensorflow_gpus is None:
        return GpuStatus(False, None, NO_TENSORFLOW_MESSAGE if colab else NO_TENSORFLOW_MESSAGE_LOCAL)
    if tensorflow_gpus:
        if nvidia_gpus:
            name, memory = nvidia_gpus[0]
            extra = f" (+{len(nvidia_gpus) - 1} more)" if len(nvidia_gpus) > 1 else ""
            memory_text = f", {memory}" if memory else ""
            return GpuStatus(True, name, f"GPU available: {name}{memory_text}{extra}.")
        return GpuStatus(True, tensorflow_gpus[0], f"GPU available to TensorFlow: {tensorflow_gpus[0]}.")
    if nvidia_gpus:
        name = nvidia_gpus[0][0]
        cannot_use = f"nvidia-smi sees a GPU ({name}) but TensorFlow cannot use it, so training would run on the CPU."
        if not colab:  # usually TensorFlow without its CUDA libraries, or a driver older than its CUDA
            return GpuStatus(False, None, f"{cannot_use} {GPU_ON_A_WORKSTATION} The driver must support the CUDA "
                                          f"version TensorFlow was built for (nvidia-smi shows it, top right).")
        return GpuStatus(False, None, f"{cannot_use} Choose {RESTART_MESSAGE} If this message comes "
                                      f"back, choose Runtime > Disconnect and delete runtime, then run the notebook "
                                      f"again from the top.")
    return GpuStatus(False, None, NO_GPU_MESSAGE if colab else NO_GPU_MESSAGE_LOCAL)


def gpu_check() -> GpuStatus:
    """Find a GPU that TensorFlow can use (``nvidia-smi`` adds its name and memory).

    Returns:
        The status; ``message`` says which GPU, or what to do without one (no GPU, a GPU that
        TensorFlow cannot use, or no TensorFlow at all, as on Colab's TPU runtime).
    """
    return gpu_status(_nvidia_smi_gpus(), _tensorflow_gpus())


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


def _git_commit(folder: pathlib.Path) -> str | None:
    """``git describe --always --dirty`` of the checkout ``folder`` (e.g. ``"c56a54f-dirty"``), or None."""
    executable = shutil.which("git")
    if executable is None or not (folder / ".git").exists():
        return None
    try:
        completed = subprocess.run([executable, "-C", str(folder), "describe", "--always", "--dirty", "--abbrev=12"],
                                   capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None


def _direct_url() -> dict:
    """The PEP 610 ``direct_url.json`` pip wrote when it installed the helpers from git or a folder, or {}."""
    try:
        text = importlib.metadata.distribution(PACKAGE_NAME).read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return {}
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}


@functools.lru_cache(maxsize=1)
def helpers_version() -> str:
    """The helpers' own version for reports and ``config.yaml``, with the git commit when known.

    Returns:
        e.g. ``"0.2.0 (git 1f2e3d4c5b6a, github.com/my-lab/dl4cells)"`` when pip installed it from
        git, ``"0.2.0 (git c56a54f0a1b2-dirty)"`` for a checkout (``-dirty``: uncommitted changes),
        or ``"0.2.0"``.
    """
    version = _installed_version(PACKAGE_NAME)
    if version is None:
        import helpers  # local: the package imports this module

        version = f"{helpers.__version__} (not installed)"
    direct_url = _direct_url()
    vcs = direct_url.get("vcs_info", {})
    if vcs.get("commit_id"):
        source = re.sub(r"^git\+|^https?://|\.git$", "", direct_url.get("url", ""))
        return f"{version} (git {vcs['commit_id'][:12]}{', ' + source if source else ''})"
    commit = _git_commit(REPOSITORY_ROOT)
    return f"{version} (git {commit})" if commit else version


def versions() -> dict[str, str]:
    """Versions of Python, the platform, the helpers and the packages results depend on, for the reports.

    Read from package metadata: TensorFlow is not imported. Packages that are missing read
    ``"not installed"``. ``"cuda (tensorflow build)"`` and ``"gpu driver"`` appear only where known.

    Returns:
        ``{"python": "3.13.0", "platform": "Linux-...", "dl4cells-helpers": "0.2.0 (git ...)",
        "tensorflow": "2.20.0", ...}``.
    """
    result = {"python": platform.python_version(), "platform": platform.platform(), PACKAGE_NAME: helpers_version()}
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
    """Requirement strings of a requirements file, or of the installed helpers' metadata (None if not installed)."""
    if requirements_path is None:
        try:
            return list(importlib.metadata.requires(PACKAGE_NAME) or [])
        except importlib.metadata.PackageNotFoundError:
            return None
    path = pathlib.Path(requirements_path)
    if not path.is_file():
        raise errors.ConfigError(f"{path}: requirements file not found. Give the path of a requirements file.")
    lines = []
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):  # options such as -r / --index-url are not packages
            lines.append(line)
    return lines


def check_requirements(requirements_path: str | pathlib.Path | None = None) -> list[str]:
    """Compare installed versions with the ranges the helpers declare (``pyproject.toml``).

    Args:
        requirements_path: a requirements file to check instead; default: the installed helpers'
            own requirements (their metadata; optional extras such as ``[test]`` are left out).

    Returns:
        One plain line per mismatch, e.g. ``"numpy 2.4.0 installed, tested with numpy<2.4,>=1.26"``;
        empty when everything matches.
    """
    from packaging import requirements as packaging_requirements  # local: only this function needs it
    from packaging import version as packaging_version

    lines = _requirement_lines(requirements_path)
    if lines is None:
        return [f"{PACKAGE_NAME} is not installed (pip install it, or run `make install` in a checkout): "
                f"the installed versions could not be checked."]
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


def _same_release(module_version: str, distribution_version: str) -> bool:
    """True when a module's ``__version__`` is its distribution's version (cv2 says "4.10.0" for "4.10.0.84")."""
    from packaging import version as packaging_version  # local: only the installation check needs it

    try:
        module_release = packaging_version.Version(module_version).release
        distribution_release = packaging_version.Version(distribution_version).release
    except packaging_version.InvalidVersion:
        return module_version == distribution_version
    return distribution_release[:len(module_release)] == module_release


def stale_modules(modules=LOADED_MODULES) -> list[str]:
    """Imported modules whose running copy is not the installed one (pip replaced it after the import).

    Args:
        modules: ``((import name, (distribution, ...)), ...)``; default ``LOADED_MODULES``.

    Returns:
        One line per stale module, e.g. ``"numpy 2.1.3 is loaded, 2.0.2 is installed"``; modules
        not imported yet, or without a ``__version__``, are never stale.
    """
    lines = []
    for module_name, distributions in modules:
        module = sys.modules.get(module_name)
        loaded = getattr(module, "__version__", None) if module is not None else None
        if not isinstance(loaded, str):
            continue
        installed = [version for version in map(_installed_version, distributions) if version]
        if installed and not any(_same_release(loaded, version) for version in installed):
            lines.append(f"{module_name} {loaded} is loaded, {' / '.join(installed)} is installed")
    return lines


def normalised_name(name: str) -> str:
    """A distribution name as pip compares it (PEP 503): lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """``{normalised distribution name: version}`` of everything installed (what the install cell records)."""
    result = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            result[normalised_name(name)] = distribution.version
    return result


def changed_distributions(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """Distributions present ``before`` an install whose version differs ``after`` it (None: removed).

    Both dicts map names (any spelling) to versions; names are compared as pip compares them.
    """
    after_normalised = {normalised_name(name): version for name, version in after.items()}
    changed = {}
    for name, version in before.items():
        now = after_normalised.get(normalised_name(name))
        if now != version:
            changed[normalised_name(name)] = (version, now)
    return changed


def install_changes_message(changed: dict[str, tuple[str, str | None]]) -> str | None:
    """Plain words for a user whose runtime's own packages the install replaced, or None when none were.

    Colab's older runtime versions (e.g. 2026.04: Python 3.12, TensorFlow 2.19) are still offered;
    the helpers need TensorFlow 2.20, so there pip replaces TensorFlow and a few of its companions.
    That works, but it is not the tested set. (Modules imported before the change are caught by
    ``stale_modules``, which asks for a restart.)
    """
    if not changed:
        return None
    listed = ", ".join(f"{name} {before} → {after or 'removed'}" for name, (before, after) in sorted(changed.items()))
    tensorflow = changed.get("tensorflow")
    if tensorflow is not None:
        return (f"This runtime came with TensorFlow {tensorflow[0]}; the helpers need {tensorflow[1]}, so installing "
                f"them replaced {len(changed)} of the runtime's packages ({listed}). This is what happens on "
                f"Colab's older runtime versions: for the tested versions choose Runtime → Change runtime type → "
                f"Runtime version: Latest, then run the notebook again from the top. You may also go on here.")
    return (f"Installing the helpers replaced {len(changed)} of this runtime's packages ({listed}); the "
            f"notebook uses the new versions.")
