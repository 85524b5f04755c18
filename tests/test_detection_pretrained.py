"""Our COCO-weight loading gives exactly what Model Garden's own ``RetinaNetTask.initialize`` gives.

For every backbone of the registry: a "published" RetinaNet (random weights, perturbed so that
nothing equals a fresh initialisation) is saved the way Model Garden's trainer saves (the
``tf.train.Checkpoint`` of ``base_trainer.Trainer`` written by ``train_lib``'s
``CheckpointManager``, two steps kept). Two fresh models with the user's (different) class count
are then initialised from it, one by ``RetinaNetTask.initialize`` with ``init_checkpoint_modules =
['backbone', 'decoder']``, one by ``backbones.load_pretrained``: backbone and decoder must equal the
source's latest step exactly, and the head must stay freshly initialised.
"""

import numpy as np
import pytest

from helpers import config as config_module

tf = pytest.importorskip("tensorflow")

from helpers.detection import backbones  # noqa: E402
from helpers.detection import model as model_module  # noqa: E402
from helpers.detection.config import DetectionConfig  # noqa: E402

SOURCE_CLASSES = 1  # the "COCO" model; the user's model has USER_CLASSES, so the classifier shapes differ
USER_CLASSES = 3
SLOW_BACKBONES = {"resnet50_fpn", "spinenet49", "spinenet49_mobile"}  # > 15 s each on 2 shared CPU cores
BACKBONE_PARAMETERS = [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_BACKBONES else name
                       for name in backbones.BACKBONES]


def experiment_for(name: str, num_classes: int, tmp_path):
    spec = backbones.get_backbone(name)
    config = config_module.config_from_form(
        DetectionConfig, "quick", images_dir=str(tmp_path / "images"), annotations_dir=str(tmp_path / "annotations"),
        model_path=str(tmp_path / "models"), model_name="parity", backbone=name, image_size=128,
        pretrained="coco" if spec.checkpoint_url else "none")
    return model_module.build_experiment(config, num_classes)


def perturb(model, seed: int) -> None:
    """Add positive noise to every variable (moving variances stay positive; zeros stop being zeros)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(variable.numpy() + rng.uniform(0.1, 0.2, variable.shape).astype(variable.dtype.as_numpy_dtype))


def save_as_model_garden_trainer(experiment, model, folder) -> str:
    """Two checkpoints (steps 9 and 10) written as Model Garden's trainer writes them; returns the latest."""
    import orbit

    task = model_module.build_task(experiment)
    optimizer = task.create_optimizer(experiment.trainer.optimizer_config, experiment.runtime)
    global_step = orbit.utils.create_global_step()
    # official/core/base_trainer.py Trainer.__init__ and official/core/train_lib.py's CheckpointManager:
    checkpoint = tf.train.Checkpoint(global_step=global_step, model=model, optimizer=optimizer,
                                     **model.checkpoint_items)
    manager = tf.train.CheckpointManager(checkpoint, directory=str(folder), max_to_keep=5, step_counter=global_step)
    for step, seed in ((9, 1), (10, 2)):
        perturb(model, seed)
        global_step.assign(step)
        latest = manager.save(checkpoint_number=global_step)
    return latest


def values(variables) -> list:
    """(name, value) of each variable, in creation order (names differ between models: Keras numbers them)."""
    return [(variable.name, variable.numpy()) for variable in variables]


def assert_same(actual: list, expected: list, what: str) -> None:
    assert len(actual) == len(expected), f"{what}: {len(actual)} variables, expected {len(expected)}"
    for (name, value), (expected_name, expected_value) in zip(actual, expected):
        np.testing.assert_array_equal(value, expected_value, err_msg=f"{what}: {name} vs {expected_name}")


def assert_freshly_initialised_head(model, source, what: str) -> None:
    """The classifier has the user's class count and no head variable equals the source's."""
    classifier_shapes = [variable.shape for variable in model.head._classifier.weights]
    assert classifier_shapes != [variable.shape for variable in source.head._classifier.weights], what
    source_head = values(source.head.weights)
    assert len(model.head.weights) == len(source_head), what
    for (name, value), (_, source_value) in zip(values(model.head.weights), source_head):
        if value.shape == source_value.shape:
            assert not np.allclose(value, source_value), f"{what}: {name} was loaded"


@pytest.mark.parametrize("name", BACKBONE_PARAMETERS)
def test_coco_loading_equals_model_garden_initialize(name, tmp_path):
    spec = backbones.get_backbone(name)
    source_experiment = experiment_for(name, SOURCE_CLASSES, tmp_path)
    source = model_module.build_model_from_experiment(source_experiment)
    latest = save_as_model_garden_trainer(source_experiment, source, tmp_path / "published" / "checkpoints")
    source_modules = {"backbone": values(source.backbone.weights),
                      "decoder": values(source.decoder.weights) if source.decoder is not None else []}

    # Model Garden: RetinaNetTask.initialize reading the folder (tf.train.latest_checkpoint). A SpineNet
    # RetinaNet has no decoder object (None), which tf.train.Checkpoint(decoder=None) refuses, so there
    # Model Garden can only be asked for the backbone.
    experiment = experiment_for(name, USER_CLASSES, tmp_path)
    theirs = model_module.build_model_from_experiment(experiment)
    modules = ["backbone", "decoder"] if theirs.decoder is not None else ["backbone"]
    experiment.task.init_checkpoint = str(tmp_path / "published" / "checkpoints")
    experiment.task.init_checkpoint_modules = modules
    model_module.build_task(experiment).initialize(theirs)

    ours = model_module.build_model_from_experiment(experiment_for(name, USER_CLASSES, tmp_path))
    prefix = backbones._find_checkpoint_prefix(tmp_path / "published", "test://published.tar.gz")
    assert prefix == latest  # the step Model Garden reads (ckpt-10), not the name sorted last (ckpt-9)
    weights = backbones.PretrainedWeights(backbone=name, url="test://published.tar.gz", sha256="0" * 64,
                                          archive=tmp_path / "published.tar.gz", checkpoint_prefix=prefix, reused=True)
    assert backbones.load_pretrained(ours, spec, weights) == modules

    for module in modules:
        assert source_modules[module], f"{module} has no variables"
        assert_same(values(getattr(theirs, module).weights), source_modules[module], f"{name} {module} (Model Garden)")
        assert_same(values(getattr(ours, module).weights), source_modules[module], f"{name} {module} (ours)")
    assert_freshly_initialised_head(theirs, source, f"{name} (Model Garden)")
    assert_freshly_initialised_head(ours, source, f"{name} (ours)")
