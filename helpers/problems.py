"""Problems found in a dataset, shared by every task's data check (the "doctor").

A data check never raises for a problem it can work around: each one becomes a ``Problem``
(kind, file, object index, message, fix), the dataset keeps what is usable, and the problems
are listed by kind with ``problem_lines`` (count, meaning, a few examples, the fix). The image
file check every task runs (``check_image_file``: decoded in full, as training will) lives here
too, so that its two problem kinds read the same in detection, classification and grading.
"""

from __future__ import annotations

import dataclasses
import pathlib

from helpers import images

UNREADABLE_IMAGE = "unreadable_image"
EXTENSION_MISMATCH = "extension_mismatch"
EXTENSION_MISMATCH_MEANING = "image whose bytes are another format than its extension says - used (information)"
UNREADABLE_IMAGE_FIX = "Re-export the image (PNG, JPEG or TIFF) or delete the file; it is left out of training."
EXAMPLES_PER_KIND = 3


@dataclasses.dataclass
class Problem:
    """One finding of a data check.

    Attributes:
        kind: one of the checking task's problem kinds (e.g. "zero_area_box").
        file: file name relative to the folder the user gave (image or XML), or for a JSON file
            ``"train.json [a.png]"`` (the JSON and the image) or ``"train.json"``.
        object_index: 0-based position of the box in ``annotation.objects``; None for file-level problems.
        message: one line saying what is wrong and what the check did about it.
        fix: one sentence saying how the user can fix it.
    """

    kind: str
    file: str
    object_index: int | None
    message: str
    fix: str


def problem_lines(problems: list[Problem], counts: dict[str, int], descriptions: dict[str, str],
                  where_listed: str) -> list[str]:
    """Text lines listing problems by kind: count, what it means, a few examples and the fix.

    Shared by every task's doctor. Args: ``counts`` kind -> count in display order; ``descriptions``
    kind -> one sentence; ``where_listed`` where the full list is (e.g. a file name).
    """
    lines = [f"{len(problems)} problems found:"]
    for kind, count in counts.items():
        examples = [problem for problem in problems if problem.kind == kind]
        lines.append(f"* {kind} ({count}): {descriptions.get(kind, kind)}")
        lines.extend(f"    {problem.message}" for problem in examples[:EXAMPLES_PER_KIND])
        if count > EXAMPLES_PER_KIND:
            lines.append(f"    ... and {count - EXAMPLES_PER_KIND} more (see {where_listed}).")
        lines.append(f"    Fix: {examples[0].fix}")
    return lines


def check_image_file(path: pathlib.Path, file: str,
                     left_out: str = "it is left out") -> tuple[images.ImageCheck | None, list[Problem]]:
    """Decode one image in full, as training will, and say what is wrong with it.

    Args:
        path: the image file; file: its name as shown (relative to the user's folder).
        left_out: what happens when it is unreadable, e.g. "it and a.xml are left out".

    Returns:
        (check, problems): ``check`` None and one ``unreadable_image`` problem when it cannot be
        decoded; else the decoded size, plus an ``extension_mismatch`` note when the bytes are
        another format than the extension says (it is still used: the decoder goes by the bytes).
    """
    try:
        check = images.check_image(path)
    except images.ImageReadError as error:
        return None, [Problem(UNREADABLE_IMAGE, file, None, f"{file}: cannot be decoded ({error.reason}); "
                              f"{left_out}.", UNREADABLE_IMAGE_FIX)]
    if check.extension_note is None:
        return check, []
    renamed = pathlib.PurePosixPath(file).stem + images.FORMAT_EXTENSIONS[check.content_format]
    return check, [Problem(EXTENSION_MISMATCH, file, None, f"{file}: {check.extension_note}; it is decoded by its "
                           "content and used.", f"Nothing to fix for training; rename it to {renamed} so that "
                           "other programs open it too.")]
