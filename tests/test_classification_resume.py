"""Interrupting training and starting the same run again resumes it: same epochs, consistent history.csv.

The interruption is simulated by a callback that raises in the middle of epoch 2 (as a Colab
disconnect would stop the process there); the second session gets no such callback.
"""

import json
import pathlib

import keras
import numpy as np
import pytest

from helpers import config as config_module
from helpers import history, runs
from helpers import split as split_module
from helpers.classification import dataset, demo_data, train
from helpers.classification.config import ClassificationConfig

pytestmark = pytest.mark.slow


class Disconnect(RuntimeError):
    pass


class DisconnectMidEpoch(keras.callbacks.Callback):
    """Raise after the first batch of the given epoch (1-based)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise Disconnect("simulated disconnect")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("resume")
    data = demo_data.make_classification_demo(tmp_path / "data", images_per_class=6, image_size=32)
    config = config_module.config_from_form(ClassificationConfig, "quick", images_dir=str(data), image_size=32,
                                            model_path=str(tmp_path / "models"), model_name="run", epochs=3,
                                            batch_size=8, reduce_lr_patience=1)
    checked = dataset.load_classification_dataset(data, progress=False)
    split = split_module.split_dataset([item.key for item in checked.items], [item.label for item in checked.items],
                                       0.25, seed=1)
    by_key = checked.items_by_key()
    return config, [by_key[key] for key in split.train], [by_key[key] for key in split.validation], checked.classes


def test_interrupted_run_resumes_to_the_same_epochs_and_history(setup):
    config, train_items, validation_items, classes = setup
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    with pytest.raises(Disconnect):
        train.train_classifier(config, run, train_items, validation_items, classes, callbacks=[DisconnectMidEpoch(2)])
    assert [row["epoch"] for row in history.read_history(run.history_path)] == [1]
    assert train.read_state(run)["epochs_completed"] == 1
    state_before = train.read_state(run)

    run = runs.open_run_folder(config.model_path, config.model_name, config)
    assert run.resumed
    result = train.train_classifier(config, run, train_items, validation_items, classes)
    rows = history.read_history(run.history_path)
    assert result.resumed_from_epoch == 1 and result.epochs_completed == 3
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    # Epoch 1's row is the one recorded before the interruption, not a re-run of it.
    assert rows[0]["train_loss"] == pytest.approx(state_before["rows"][0]["train_loss"])
    assert all(row["phase"] == "all" for row in train.read_state(run)["rows"])
    assert sorted(path.name for path in run.checkpoints.glob("epoch_*.keras")) == ["epoch_0002.keras",
                                                                                   "epoch_0003.keras"]
    assert (run.checkpoints / train.BEST_FILE).is_file() and 1 <= result.best_epoch <= 3


def test_history_written_after_the_checkpoint_is_repaired_on_the_next_start(setup):
    config, train_items, validation_items, classes = setup
    run = runs.open_run_folder(config.model_path, config.model_name, config)
    lines = run.history_path.read_text(encoding="utf-8").splitlines()
    # A process killed between saving epoch 3 and appending its row, plus a stray duplicate row.
    run.history_path.write_text("\n".join(lines[:-1] + [lines[1]]) + "\n", encoding="utf-8")
    result = train.train_classifier(config, run, train_items, validation_items, classes)
    assert result.epochs_completed == 3 and result.resumed_from_epoch == 3
    assert [row["epoch"] for row in history.read_history(run.history_path)] == [1, 2, 3]
    state = json.loads((run.checkpoints / train.STATE_FILE).read_text(encoding="utf-8"))
    assert state["plateau"] is not None and "wait" in state["plateau"]


def test_two_phases_keep_the_backbone_frozen_first_then_fine_tune_the_top(setup, tmp_path):
    config, train_items, validation_items, classes = setup
    backbone = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights_file = tmp_path / "pretend_imagenet.weights.h5"
    backbone.save_weights(weights_file)
    two_phase = config_module.config_from_form(ClassificationConfig, "quick", images_dir=config.images_dir,
                                               model_path=str(tmp_path / "models"), model_name="phases",
                                               image_size=32, batch_size=8, pretrained="imagenet", epochs=2,
                                               head_epochs=1, fine_tune_layers=10)
    run = runs.open_run_folder(two_phase.model_path, two_phase.model_name, two_phase)
    with pytest.raises(Exception, match="Run cell 3.3"):
        train.train_classifier(two_phase, run, train_items, validation_items, classes)
    from helpers.classification import model as model_module

    after_head = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                after_head.update({layer.name: [w.copy() for w in layer.get_weights()]
                                   for layer in model_module.backbone_layers(self.model)})

    result = train.train_classifier(two_phase, run, train_items, validation_items, classes,
                                    callbacks=[Snapshot()], weights_path=weights_file)
    assert [row["phase"] for row in train.read_state(run)["rows"]] == ["head", "fine_tune"]
    initial = {layer.name: layer.get_weights() for layer in backbone.layers}
    for name, weights in after_head.items():  # phase 1 left every backbone weight as loaded
        for before, after in zip(initial.get(name, []), weights):
            assert (before == after).all(), name
    latest = model_module.load_classifier(run.checkpoints / train.read_state(run)["checkpoint"])
    layers = model_module.backbone_layers(latest)
    changed = {layer.name for layer in layers
               if any((a != b).any() for a, b in zip(layer.get_weights(), after_head[layer.name]))}
    top_trainable = {layer.name for layer in layers[-10:] if not isinstance(layer, keras.layers.BatchNormalization)}
    assert changed and changed <= top_trainable  # phase 2 changed only the top 10 layers, batch norm excluded
    assert result.epochs_completed == 2


def test_continue_from_an_exported_model_trains_it_further(setup, tmp_path):
    config, train_items, validation_items, classes = setup
    from helpers.classification import predict

    first_run = runs.existing_run(pathlib.Path(config.model_path) / config.model_name)
    trained = train.train_classifier(config, first_run, train_items, validation_items, classes)  # already finished
    predict.export_model(trained.model, classes, first_run)
    further = config_module.config_from_form(ClassificationConfig, "quick", images_dir=config.images_dir,
                                             model_path=str(tmp_path / "models"), model_name="further", image_size=32,
                                             batch_size=8, epochs=1, continue_from=str(first_run.root),
                                             fine_tune_learning_rate=1e-8)
    assert not further.trains_from_scratch and train.phases(further) == [("fine_tune", 1, 1)]
    run = runs.open_run_folder(further.model_path, further.model_name, further)
    exported = first_run.exported_model / "classifier.keras"
    result = train.train_classifier(further, run, train_items, validation_items, classes, initial_model_path=exported)
    assert result.epochs_completed == 1
    # At a learning rate of 1e-8 the weights stay where they started: at the exported model's.
    for layer in ("head_classes", "conv"):
        np.testing.assert_allclose(result.model.get_layer(layer).get_weights()[0],
                                   trained.model.get_layer(layer).get_weights()[0], atol=1e-5)
    with pytest.raises(Exception, match="continue_from: that model has 3 classes"):
        train.train_classifier(further, runs.open_run_folder(further.model_path, "other", further), train_items,
                               validation_items, classes + ["extra"], initial_model_path=exported)
