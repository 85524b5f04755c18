"""Numeric precision of training and prediction: one rule for every task.

The ``mixed_precision`` form field of detection, classification and grading takes the same
values and means the same thing:

* ``"auto"``: bfloat16 on a TPU, float16 on a GPU (with dynamic loss scaling, so small
  gradients do not underflow), float32 on a CPU (where reduced precision is slower, not faster);
* ``"float32"``, ``"float16"`` or ``"bfloat16"``: that compute dtype on any hardware.

Reduced precision is *mixed*: variables stay float32, layers compute in the reduced dtype, and
every model's last layer, its losses and its outputs are float32. Keras (classification, grading)
and tf_keras (detection, through Model Garden) name the policies alike (``KERAS_POLICIES``).

Importing this module does not import TensorFlow; ``resolve`` does when it has to look at the
hardware.
"""

from __future__ import annotations

from helpers import errors

CHOICES = ("auto", "float32", "float16", "bfloat16")
# Compute dtype that "auto" picks on each accelerator kind (helpers.strategy.accelerator_kind).
AUTO_DTYPES = {"tpu": "bfloat16", "gpu": "float16", "cpu": "float32"}
# Keras 3 / tf_keras dtype-policy name of each compute dtype.
KERAS_POLICIES = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# The help text of every task's mixed_precision config field.
HELP = ("'auto' = bfloat16 on a TPU, float16 (with loss scaling) on a GPU, float32 on a CPU; "
        "'float32', 'float16' or 'bfloat16' force that precision.")


def resolve(mixed_precision: str, accelerator: str | None = None) -> str:
    """The compute dtype for a ``mixed_precision`` form value.

    Args:
        mixed_precision: one of ``CHOICES``.
        accelerator: ``"tpu"``, ``"gpu"`` or ``"cpu"``; None = this runtime's
            (``helpers.strategy.accelerator_kind()``, imports TensorFlow).

    Returns:
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Raises:
        ConfigError: ``mixed_precision`` is not one of ``CHOICES``.
    """
    if mixed_precision not in CHOICES:
        raise errors.ConfigError(f"mixed_precision: {mixed_precision!r} is not one of {', '.join(CHOICES)}.")
    if mixed_precision != "auto":
        return mixed_precision
    if accelerator is None:
        from helpers import strategy

        accelerator = strategy.accelerator_kind()
    return AUTO_DTYPES[accelerator]


def keras_policy(mixed_precision: str, accelerator: str | None = None) -> str:
    """The Keras / tf_keras dtype-policy name of a form value: "float32", "mixed_float16" or "mixed_bfloat16"."""
    return KERAS_POLICIES[resolve(mixed_precision, accelerator)]
