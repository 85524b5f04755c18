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


def test_check_requirements_defaults_to_the_repository_file():
    assert environment.REQUIREMENTS_PATH == REPOSITORY_ROOT / "requirements.txt"
    assert environment.check_requirements() == environment.check_requirements(REPOSITORY_ROOT / "requirements.txt")


def test_check_requirements_falls_back_to_package_metadata(monkeypatch, tmp_path):
    monkeypatch.setattr(environment, "REQUIREMENTS_PATH", tmp_path / "absent.txt")
    monkeypatch.setattr(environment.importlib.metadata, "requires",
                        lambda name: ["numpy<1.0", 'pytest; extra == "test"'] if name == "dl4cells-helpers" else None)
    assert environment.check_requirements() == [
        f"numpy {importlib.metadata.version('numpy')} installed, tested with numpy<1.0"]


def test_an_explicit_missing_requirements_file_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="absent.txt: requirements file not found"):
        environment.check_requirements(tmp_path / "absent.txt")


def test_gpu_check_gives_a_plain_message():
    status = environment.gpu_check()
    assert status.available == (status.name is not None) and status.message
    if not status.available:
        assert "training will be slow" in status.message
        assert "Runtime > Change runtime type > GPU" in status.message
    else:
        assert status.name in status.message


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
    status = environment.gpu_check()
    assert (status.available, status.name) == (True, "Tesla T4")
    assert status.message == "GPU available: Tesla T4, 15360 MiB."
    assert environment.versions()["gpu driver"] == "535.104.05"


def test_a_failing_nvidia_smi_and_no_tensorflow_gpu_means_no_gpu(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed because it could not communicate with the driver"; exit 9')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(environment, "_tensorflow_gpus", lambda: [])
    status = environment.gpu_check()
    assert (status.available, status.name, status.message) == (False, None, environment.NO_GPU_MESSAGE)
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
