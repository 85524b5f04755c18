"""history.csv: append, repair after a kill, plot."""

import math

from helpers import history

COLUMNS = ["epoch", "train_total_loss", "validation_map50"]


def test_append_read_and_truncate(tmp_path):
    path = tmp_path / "history.csv"
    for epoch in (1, 2, 3):
        history.append_history(path, {"epoch": epoch, "train_total_loss": 1.0 / epoch}, COLUMNS)
    history.append_history(path, {"epoch": 2, "train_total_loss": 9.0}, COLUMNS)  # a duplicate row after a crash
    rows = history.read_history(path)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 2]
    assert math.isnan(rows[0]["validation_map50"])
    kept = history.truncate_history(path, completed_epochs=2, columns=COLUMNS)
    assert [row["epoch"] for row in kept] == [1, 2]
    assert [row["train_total_loss"] for row in history.read_history(path)] == [1.0, 0.5]


def test_missing_file_reads_empty_and_plot_writes_png(tmp_path):
    assert history.read_history(tmp_path / "absent.csv") == []
    path = tmp_path / "history.csv"
    for epoch in (1, 2):
        history.append_history(path, {"epoch": epoch, "train_total_loss": 2.0 - epoch, "validation_map50": 0.1 * epoch},
                               COLUMNS)
    image = history.plot_history(path, tmp_path / "curves.png",
                                 [("Loss", ["train_total_loss"]), ("mAP", ["validation_map50"])])
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
