"""The QC browser for graders: the classification browser (``helpers.classification.browser``) with a grade line
and the expected-grade Grad-CAM (``helpers.grading.gradcam``).

'mistakes only' shows the images whose predicted grade is wrong, furthest from the true grade first.
"""

from __future__ import annotations

from typing import Any

from helpers.classification import browser as classification_browser


def describe(result: Any, key: str) -> str:
    """One line per image: true grade, predicted grade and its score, the distance, and every grade's score."""
    true_grade, predicted = int(result.items[key].label), int(result.grades[key])
    scores = result.scores[key]
    verdict = "correct" if predicted == true_grade else f"WRONG by {abs(predicted - true_grade)} grade(s)"
    listed = ", ".join(f"{grade}: {score:.2f}" for grade, score in enumerate(scores))
    return (f"{key}: true grade {true_grade}, predicted {predicted} ({scores[predicted]:.2f}) – {verdict}. "
            f"Scores per grade: {listed}")


def browse(result: Any):
    """A slider (and 'mistakes only') over the QC images: image | expected-grade Grad-CAM, true and predicted grade."""
    from helpers.grading import gradcam

    return classification_browser.browse(result, describe_image=describe, draw=gradcam.gradcam_figure)
