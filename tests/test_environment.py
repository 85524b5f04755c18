"""Colab detection, storage, GPU check, versions and the requirements check."""

import importlib.metadata
import pathlib
import subprocess
import sys
import types

import pytest

from helpers import environment, errors
from tests.conftest import REPOSITORY_ROOT


def test_versions_name_every_package_and_do_not_import_tensorflow():
    code = ("import sys, helpers.environment as e; v = e.versions(); "
            "print(sorted(v)); print('tensorflow' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               cwd=REPOSITORY_ROOT)
    keys_line, imported_line = completed.stdout.strip().splitlines()[-2:]
    assert imported_line == "False"
    versions = environment.versions()
    for key in ("python", "platform", *environment.REPORTED_PACKAGES):
        assert key in keys_line and isinstance(versions[key], str) and versions[key]
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["numpy"] == importlib.metadata.version("numpy")


def test_missing_package_reads_not_installed(monkeypatch):
    monkeypatch.setattr(environment, "REPORTED_PACKAGES", ("numpy", "dl4cells-no-such-package"))
    versions = environment.versions()
    assert versions["dl4cells-no-such-package"] == "not installed" and versions["numpy"] != "not installed"


def test_check_requirements_lists_each_mismatch_in_plain_words(tmp_path):
    numpy_version = importlib.metadata.version("numpy")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# tested together\n"
                            "--extra-index-url https://example.invalid/simple\n"
                            "numpy>=1.0,<1.1  # deliberately too old\n"
                            "packaging>=1\n"
                            "dl4cells-no-such-package==1.0\n"
                            'numpy<1.0; sys_platform == "no-such-platform"\n', encoding="utf-8")
    assert environment.check_requirements(requirements) == [
        f"numpy {numpy_version} installed, tested with numpy>=1.0,<1.1",
        "dl4cells-no-such-package not installed, tested with dl4cells-no-such-package==1.0",
    ]


def test_check_requirements_defaults_to_the_installed_helpers_metadata():
    """The ranges come from pyproject.toml (via the installed metadata); the [test] extra is left out."""
    declared = importlib.metadata.requires("dl4cells-helpers")
    assert any(line.startswith("tensorflow") for line in declared)
    assert any("extra ==" in line and line.startswith("pytest") for line in declared)
    assert environment.check_requirements() == []


def test_check_requirements_leaves_out_extras_and_reports_mismatches(monkeypatch):
    monkeypatch.setattr(environment.importlib.metadata, "requires",
                        lambda name: ["numpy<1.0", 'pytest<1; extra == "test"'] if name == "dl4cells-helpers" else None)
    assert environment.check_requirements() == [
        f"numpy {importlib.metadata.version('numpy')} installed, tested with numpy<1.0"]


def test_check_requirements_when_the_helpers_are_not_installed(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(environment.importlib.metadata, "requires", not_installed)
    assert environment.check_requirements() == [
        "dl4cells-helpers is not installed (pip install it, or run `make install` in a checkout): "
        "the installed versions could not be checked."]


def test_an_explicit_missing_requirements_file_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="absent.txt: requirements file not found"):
        environment.check_requirements(tmp_path / "absent.txt")


def test_helpers_version_names_the_version_and_the_commit():
    import helpers

    text = environment.helpers_version()
    assert text.startswith(f"{helpers.__version__} ") or text == helpers.__version__
    assert helpers.__version__ == importlib.metadata.version("dl4cells-helpers")
    if (REPOSITORY_ROOT / ".git").exists():
        commit = subprocess.run(["git", "-C", str(REPOSITORY_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        assert f"(git {commit[:12]}" in text
    assert environment.versions()["dl4cells-helpers"] == text


def test_helpers_version_of_a_git_install_reads_pips_record(monkeypatch):
    environment.helpers_version.cache_clear()
    monkeypatch.setattr(environment, "_direct_url", lambda: {
        "url": "https://github.com/my-lab/dl4cells.git",
        "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123", "requested_revision": "main"}})
    try:
        assert environment.helpers_version().endswith("(git 0123456789ab, github.com/my-lab/dl4cells)")
    finally:
        environment.helpers_version.cache_clear()


def test_stale_modules_name_a_module_replaced_after_its_import(monkeypatch):
    numpy_version = importlib.metadata.version("numpy")
    monkeypatch.setitem(sys.modules, "fake_numpy_copy", types.SimpleNamespace(__version__="1.0.0"))
    monkeypatch.setitem(sys.modules, "fake_cv2", types.SimpleNamespace(__version__="5.0.0"))
    modules = (("fake_numpy_copy", ("numpy",)), ("fake_cv2", ("opencv-python-headless",)),
               ("not_imported_module", ("numpy",)))
    monkeypatch.setattr(environment, "_installed_version",
                        lambda name: {"numpy": numpy_version, "opencv-python-headless": "5.0.0.93"}.get(name))
    assert environment.stale_modules(modules) == [f"fake_numpy_copy 1.0.0 is loaded, {numpy_version} is installed"]
    assert environment.stale_modules() == []  # this test process runs what is installed


def test_changed_distributions_compare_names_as_pip_does():
    before = {"tensorflow": "2.19.0", "tf_keras": "2.19.0", "numpy": "2.0.2", "Send2Trash": "1.8.3"}
    after = {"tensorflow": "2.20.0", "tf-keras": "2.20.1", "numpy": "2.0.2", "tf-models-official": "2.20.0"}
    assert environment.changed_distributions(before, after) == {
        "tensorflow": ("2.19.0", "2.20.0"), "tf-keras": ("2.19.0", "2.20.1"), "send2trash": ("1.8.3", None)}
    assert environment.install_changes_message({}) is None
    other = environment.install_changes_message({"protobuf": ("4.25.0", "5.29.6")})
    assert "replaced 1 of this runtime's packages (protobuf 4.25.0 → 5.29.6)" in other


def test_gpu_check_gives_a_plain_message():
    status = environment.gpu_check()
    assert status.available == (status.name is not None) and status.message
    if not status.available:
        assert "training will be slow" in status.message
        assert "nvidia-smi lists it" in status.message  # this machine is not Colab: a workstation's steps
    else:
        assert status.name in status.message


def test_without_a_gpu_colab_gets_its_menu_and_a_workstation_the_installation_step():
    on_colab = environment.gpu_status(nvidia_gpus=None, tensorflow_gpus=[], colab=True).message
    elsewhere = environment.gpu_status(nvidia_gpus=None, tensorflow_gpus=[], colab=False).message
    assert on_colab == environment.NO_GPU_MESSAGE and "Runtime > Change runtime type > GPU" in on_colab
    assert elsewhere == environment.NO_GPU_MESSAGE_LOCAL and "Runtime" not in elsewhere
    assert 'pip install "tensorflow[and-cuda]' in elsewhere
    unusable = environment.gpu_status(nvidia_gpus=[("RTX 4090", "24564 MiB")], tensorflow_gpus=[], colab=False).message
    assert unusable.startswith("nvidia-smi sees a GPU (RTX 4090) but TensorFlow cannot use it")
    assert "tensorflow[and-cuda]" in unusable and "CUDA version" in unusable and "Runtime" not in unusable
    no_tensorflow = environment.gpu_status(nvidia_gpus=None, tensorflow_gpus=None, colab=False).message
    assert "pip install -r requirements.txt" in no_tensorflow and "Runtime" not in no_tensorflow


def fake_nvidia_smi(folder: pathlib.Path, body: str) -> None:
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    script.chmod(0o755)


def test_gpu_check_and_versions_read_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'case "$1" in\n'
                              '  --query-gpu=name,memory.total) echo "Tesla T4, 15360 MiB" ;;\n'
                              '  --query-gpu=driver_version) echo "535.104.05" ;;\n'
                              '  *) exit 2 ;;\n'
                              'esac')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(environment, "_tensorflow_gpus", lambda: ["/physical_device:GPU:0"])
    status = environment.gpu_check()
    assert (status.available, status.name) == (True, "Tesla T4")
    assert status.message == "GPU available: Tesla T4, 15360 MiB."
    assert environment.versions()["gpu driver"] == "535.104.05"


def test_a_gpu_that_tensorflow_cannot_use_is_not_available(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "Tesla T4, 15360 MiB"')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(environment, "_tensorflow_gpus", lambda: [])
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20260101")  # Colab's own advice
    status = environment.gpu_check()
    assert (status.available, status.name) == (False, None)
    assert status.message.startswith("nvidia-smi sees a GPU (Tesla T4) but TensorFlow cannot use it")
    assert "Runtime → Restart session" in status.message and "Disconnect and delete runtime" in status.message


def test_without_tensorflow_the_gpu_check_names_the_runtime_to_choose(monkeypatch):
    status = environment.gpu_status(nvidia_gpus=None, tensorflow_gpus=None, colab=True)
    assert (status.available, status.message) == (False, environment.NO_TENSORFLOW_MESSAGE)
    assert "TPU runtime" in status.message and "T4 GPU" in status.message


def test_a_gpu_only_tensorflow_sees_is_named():
    status = environment.gpu_status(nvidia_gpus=None, tensorflow_gpus=["/physical_device:GPU:0"])
    assert (status.available, status.name) == (True, "/physical_device:GPU:0")


def test_a_failing_nvidia_smi_and_no_tensorflow_gpu_means_no_gpu(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed because it could not communicate with the driver"; exit 9')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(environment, "_tensorflow_gpus", lambda: [])
    status = environment.gpu_check()
    assert (status.available, status.name, status.message) == (False, None, environment.NO_GPU_MESSAGE_LOCAL)
    assert "gpu driver" not in environment.versions()


def test_in_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert environment.in_colab() is False
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20250101-060000_RC00")
    assert environment.in_colab() is True


def test_prepare_storage_uses_local_folders_outside_colab(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert environment.prepare_storage(tmp_path) == tmp_path
    assert "local folders are used" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert environment.prepare_storage() == tmp_path
    with pytest.raises(errors.ConfigError, match="nowhere does not exist"):
        environment.prepare_storage(tmp_path / "nowhere")


def test_prepare_storage_mounts_drive_on_colab(tmp_path, monkeypatch):
    mounted = []
    drive = types.SimpleNamespace(mount=lambda point: (mounted.append(point), (tmp_path / "MyDrive").mkdir()))
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(environment, "DRIVE_FOLDER", tmp_path / "MyDrive")
    assert environment.prepare_storage() == tmp_path / "MyDrive"
    assert mounted == ["/content/gdrive"]
    assert environment.prepare_storage() == tmp_path / "MyDrive" and len(mounted) == 1, "mounted once"


def test_installation_check_on_colabs_tpu_runtime_says_which_runtime_to_choose(monkeypatch):
    from helpers import notebook

    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-tpu")
    tpu_runtime = {"jax": "0.7.2", "numpy": "2.1.3"}  # Colab's TPU freeze has no TensorFlow
    with pytest.raises(errors.RuntimeProblem, match="TensorFlow is not installed in this runtime.*T4 GPU"):
        notebook.check_installation(tpu_runtime, expected_version=importlib.metadata.version("dl4cells-helpers"))
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert notebook.check_installation(tpu_runtime) == []  # elsewhere pip installs TensorFlow: nothing to say


def test_installation_check_on_the_older_colab_runtime_lists_what_pip_replaced(monkeypatch, capsys):
    from helpers import notebook

    older = {"tensorflow": "2.19.0", "tf-keras": "2.19.0", "tensorboard": "2.19.0", "dl4cells-helpers": "0.1.0",
             "numpy": importlib.metadata.version("numpy")}
    notebook.check_installation(older)
    out = capsys.readouterr().out
    assert "DL4Cells helpers 0.2.0" in out
    assert "This runtime came with TensorFlow 2.19.0" in out and "Runtime version: Latest" in out
    assert "dl4cells-helpers 0.1.0" not in out  # our own upgrade is the point of the install, not news
    assert "All packages match the tested versions." in out


def test_installation_check_asks_for_a_restart_when_an_imported_module_was_replaced(monkeypatch):
    from helpers import notebook

    monkeypatch.setattr(environment, "stale_modules", lambda: ["numpy 2.0.2 is loaded, 2.1.3 is installed"])
    with pytest.raises(errors.RuntimeProblem, match=r"numpy 2.0.2 is loaded.*Kernel → Restart in Jupyter"):
        notebook.check_installation({})
    monkeypatch.setattr(environment, "in_colab", lambda: True)
    with pytest.raises(errors.RuntimeProblem, match=r"numpy 2.0.2 is loaded.*Runtime → Restart session"):
        notebook.check_installation({"tensorflow": "2.20.0"})


def test_installation_check_names_a_helpers_version_other_than_the_notebooks(capsys):
    from helpers import notebook

    problems = notebook.check_installation(expected_version="9.9.9")
    assert len(problems) == 1 and "this notebook was written for 9.9.9" in problems[0]
    assert "Some installed versions differ" in capsys.readouterr().out
