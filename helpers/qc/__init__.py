"""Quality control: detection (pycocotools), classification and grading (scikit-learn).

Run as a command with ``python -m helpers.qc {detection,classification,grading} ... --json``.
No module of this package imports TensorFlow, so predictions of any tool can be checked.
"""
