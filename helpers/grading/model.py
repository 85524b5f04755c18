"""The three ordinal heads and their losses (Keras 3), on the classification engine's backbone.

``build_grading_model`` builds the classification model (``helpers.classification.model``:
backbone, its own preprocessing, ``head_pooling`` and ``head_dropout``) and replaces its softmax
layer by the chosen head, named ``head_*`` like the classification head so that freezing,
fine-tuning and Grad-CAM work unchanged. Input: float32 [batch, S, S, 3] RGB 0..255. Outputs:

* ``softmax``: ``head_grades`` float32 [batch, K], probabilities of each grade;
* ``cumulative`` (CORAL, Cao, Mirjalili & Raschka 2020): ``head_score`` (one weight vector shared
  by all thresholds, no bias) then ``head_cumulative``: float32 [batch, K-1],
  P(grade > k) = sigmoid(score + b_k);
* ``regression``: ``head_grade`` float32 [batch, 1], the grade as a real number.

The losses take the training pipeline's one-hot (or mixed) targets float [batch, K], so the
classification pipeline, class weights, CutMix and MixUp apply unchanged: the regression target
is the expected grade sum_k k·y_k, the cumulative targets are P(grade > k) = sum_{j>k} y_j.
"""

from __future__ import annotations

import keras

from helpers.classification import model as classification_model

PACKAGE = "dl4cells_grading"


@keras.saving.register_keras_serializable(package=PACKAGE)
class CumulativeBiases(keras.layers.Layer):
    """P(grade > k) = sigmoid(score + b_k), k = 0..K-2: float [batch, 1] -> float32 [batch, K-1].

    The biases start decreasing (b_k = (K-2)/2 - k), so the initial cumulative probabilities are
    already ordered, as CORAL's rank consistency requires of the trained model.
    """

    def __init__(self, thresholds: int, **options):
        super().__init__(**options)
        self.thresholds = int(thresholds)

    def build(self, input_shape):
        start = (self.thresholds - 1) / 2.0
        initial = [start - index for index in range(self.thresholds)]
        self.biases = self.add_weight(shape=(self.thresholds,), initializer=keras.initializers.Constant(initial),
                                      name="biases")

    def call(self, score):
        return keras.ops.sigmoid(keras.ops.cast(score, "float32") + self.biases)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.thresholds}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ExpectedGradeSquaredError(keras.losses.Loss):
    """(prediction − sum_k k·y_k)² per image; y float [batch, K] one-hot or mixed, prediction [batch, 1]."""

    def call(self, y_true, y_pred):
        grades = keras.ops.arange(y_true.shape[-1], dtype="float32")
        target = keras.ops.sum(keras.ops.cast(y_true, "float32") * grades, axis=-1)
        return keras.ops.square(keras.ops.cast(y_pred[:, 0], "float32") - target)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CumulativeBinaryCrossentropy(keras.losses.Loss):
    """CORAL's loss: sum over k of the binary cross-entropy of P(grade > k).

    y_true float [batch, K] one-hot or mixed; y_pred float [batch, K-1] cumulative probabilities.
    """

    def call(self, y_true, y_pred):
        y_true = keras.ops.cast(y_true, "float32")
        targets = 1.0 - keras.ops.cumsum(y_true, axis=-1)[:, :-1]  # P(grade > k) = 1 - P(grade <= k)
        predicted = keras.ops.clip(keras.ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
        losses = -(targets * keras.ops.log(predicted) + (1.0 - targets) * keras.ops.log(1.0 - predicted))
        return keras.ops.sum(losses, axis=-1)


def build_grading_model(head: str, backbone_name: str, num_grades: int, image_size: int, build_base=None,
                        **options) -> keras.Model:
    """The classification model with its softmax layer replaced by ``head`` (module docstring for the outputs).

    Args:
        build_base: the classification builder to start from (default
            ``helpers.classification.model.build_classifier``; tests pass a tiny one).
        **options: passed to it (weights_path, dropout, batch_norm_momentum...).
    """
    build_base = build_base or classification_model.build_classifier
    base = build_base(backbone_name, num_grades, image_size, **options)
    features = base.get_layer(classification_model.HEAD_PREFIX + "dropout").output
    prefix = classification_model.HEAD_PREFIX
    # float32 outputs even under mixed precision, so the losses stay stable.
    if head == "softmax":
        outputs = keras.layers.Dense(num_grades, activation="softmax", dtype="float32",
                                     name=prefix + "grades")(features)
    elif head == "cumulative":
        score = keras.layers.Dense(1, use_bias=False, dtype="float32", name=prefix + "score")(features)
        outputs = CumulativeBiases(num_grades - 1, dtype="float32", name=prefix + "cumulative")(score)
    else:
        outputs = keras.layers.Dense(1, dtype="float32", name=prefix + "grade")(features)
    return keras.Model(base.input, outputs, name=f"{backbone_name}_{head}_grader")


def head_of(model: keras.Model) -> str:
    """Which head a saved grading model has: "softmax", "cumulative" or "regression"."""
    names = {layer.name for layer in model.layers}
    prefix = classification_model.HEAD_PREFIX
    if prefix + "cumulative" in names:
        return "cumulative"
    return "regression" if prefix + "grade" in names else "softmax"


def compile_grading_model(model: keras.Model, optimizer, head: str, label_smoothing: float = 0.0) -> None:
    """Compile with the head's loss (no Keras metrics: the validation figures come from scikit-learn)."""
    loss = {"softmax": keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
            "cumulative": CumulativeBinaryCrossentropy(), "regression": ExpectedGradeSquaredError()}[head]
    model.compile(optimizer=optimizer, loss=loss)
