"""The GIoU box term (``model.box_iou_loss``) on hand-made anchors and boxes, against GIoU computed in pixels."""

import types

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from official.vision.ops import box_ops  # noqa: E402

from helpers.detection import model as model_module  # noqa: E402


def giou_in_pixels(a, b) -> float:
    """GIoU of two (ymin, xmin, ymax, xmax) boxes, written out."""
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = area(a) + area(b) - inter
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union - (hull - union) / hull


def task_with(coder_weights):
    generator = types.SimpleNamespace(box_coder_weights=coder_weights)
    return types.SimpleNamespace(task_config=types.SimpleNamespace(
        model=types.SimpleNamespace(detection_generator=generator)))


@pytest.mark.parametrize("coder_weights", [None, [10.0, 10.0, 5.0, 5.0]])
def test_giou_term_equals_the_pixel_giou_of_positive_anchors_only(coder_weights):
    anchors = np.array([[10, 20, 30, 60], [0, 0, 32, 32], [50, 50, 58, 66]], np.float32)  # non-square anchors
    targets = np.array([[12, 25, 28, 70], [4, 2, 30, 28], [0, 0, 1, 1]], np.float32)
    predicted = np.array([[8, 22, 35, 55], [40, 40, 60, 60], [100, 100, 300, 300]], np.float32)  # 2nd: disjoint
    box_weights = np.array([[1.0, 1.0, 0.0]], np.float32)  # the third anchor is negative: its box is ignored
    encode = lambda boxes: box_ops.encode_boxes(tf.constant(boxes), tf.constant(anchors), coder_weights)  # noqa: E731
    labels = {"box_targets": {"3": tf.reshape(encode(targets), [1, 1, 3, 4])},
              "box_weights": tf.constant(box_weights)}
    outputs = {"box_outputs": {"3": tf.reshape(encode(predicted), [1, 1, 3, 4])}}

    loss = float(model_module.box_iou_loss(task_with(coder_weights), outputs, labels))

    gious = [giou_in_pixels(predicted[index], targets[index]) for index in range(2)]
    assert gious[1] < 0  # disjoint boxes: GIoU still says how far apart they are
    assert loss == pytest.approx(sum(1.0 - value for value in gious) / (2 + 1), rel=1e-4)
