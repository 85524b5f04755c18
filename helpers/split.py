"""Seeded, stratified, group-aware train/validation(/test) split, recorded as ``split.json``.

The split is a list of keys (file stems or file names); nothing is moved, copied or even
opened: the user's folders are never touched. The record (``Split.save``) holds the three
sorted key lists, the seed, the fractions, what the split was stratified and grouped by, and
counts per stratum, so a run can be resumed or audited later.

How it works:

* **Labels.** Per key, either a collection of class names (detection: the classes present in
  the image) or one label (classification or grading: a string or an integer).
* **Strata.** A collection becomes its rarest class (fewest images containing it in the whole
  dataset; ties broken by name), an empty collection becomes ``"background"``: so every
  rare class is spread over the splits. A single label is its own stratum.
* **Groups** (e.g. patient IDs). A group is the unit that is assigned, so it never straddles
  two splits. Its stratum is the rarest class present in any of its keys (collections) or its
  most common label (single labels; ties go to the label rarer in the whole dataset, which in
  grading data is usually the more severe grade).
* **Quotas.** Each split gets ``fraction * number of keys`` keys (rounded half up), shared
  between the strata in proportion to their size (largest remainders). A stratum with at least two units
  (keys or groups) gets at least one validation unit when ``validation_fraction > 0`` (and
  one test unit when it has three units and ``test_fraction > 0``); every stratum keeps at
  least one unit for training, so a class with a single image is always trained on. Units are
  shuffled per stratum with a ``numpy`` Generator seeded by ``seed``: the same input, seed and
  numpy version give the same split (a resumed run reuses the record, not a new draw). The fractions are therefore met approximately (exactly when
  the strata are large and there are no groups).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from helpers import errors

SPLIT_FILE_NAME = "split.json"
BACKGROUND = "background"
SPLIT_NAMES = ("train", "validation", "test")
_COLLECTION_TYPES = (set, frozenset, list, tuple)


@dataclasses.dataclass
class Split:
    """A train/validation/test split of keys.

    Attributes:
        train, validation, test: keys (file stems or file names), each list sorted.
        seed: the seed of the shuffle.
        validation_fraction, test_fraction: the fractions asked for (0..1).
        stratified_by: what the strata were, in plain words, e.g. "classes present (rarest class per image)".
        grouped_by: the name of the group column (e.g. "patient_id") when groups were given, else None.
        stratum_counts: {stratum: {"train": n, "validation": n, "test": n}} in keys.
    """

    train: list[str]
    validation: list[str]
    test: list[str]
    seed: int
    validation_fraction: float
    test_fraction: float
    stratified_by: str
    grouped_by: str | None = None
    stratum_counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of keys per split: {"train": n, "validation": n, "test": n}."""
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}

    def save(self, path: str | pathlib.Path) -> pathlib.Path:
        """Write the split as UTF-8 JSON (all fields plus ``counts``).

        Args:
            path: the file to write, or a folder (then ``<folder>/split.json``). The parent folder
                is created. The file is written to a temporary name first and then renamed, so an
                interrupted save never leaves half a record.

        Returns:
            The path written.
        """
        path = _split_file(path)
        record = dataclasses.asdict(self)
        record["counts"] = self.counts()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        return path


def _split_file(path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    return path / SPLIT_FILE_NAME if path.is_dir() else path


# ---------------------------------------------------------------- checking the input


def _check_fractions(validation_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Both fractions as floats in [0, 1) with a sum below 1; ConfigError naming the field otherwise."""
    checked = []
    for name, value in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(value)) or not 0.0 <= float(value) < 1.0:
            raise errors.ConfigError(f"{name}: {value!r} is not a fraction from 0 to below 1. "
                                     f"Set {name} to e.g. 0.15 (15 % of the images).")
        checked.append(float(value))
    if sum(checked) >= 1.0:
        raise errors.ConfigError(f"validation_fraction + test_fraction = {sum(checked):g} leaves no training images. "
                                 "Make the two fractions add up to less than 1 (e.g. 0.15 and 0.15).")
    return checked[0], checked[1]


def _check_keys(keys: Sequence[str], labels: Sequence[Any], groups: Sequence[str] | None) -> list[str]:
    """Keys as a list; DatasetError for non-text or duplicate keys and for length mismatches."""
    keys = list(keys)
    for index, key in enumerate(keys):
        if not isinstance(key, str) or not key:
            raise errors.DatasetError(f"keys: item {index + 1} is {key!r}, not a file name. "
                                      "Pass one non-empty file name (or stem) per image.")
    duplicates = sorted(key for key, count in collections.Counter(keys).items() if count > 1)
    if duplicates:
        raise errors.DatasetError(f"keys: {', '.join(duplicates[:5])} appear more than once. "
                                  "Give every image a unique file name (stem).")
    for name, values in (("labels", labels), ("groups", groups)):
        if values is not None and len(values) != len(keys):
            raise errors.DatasetError(f"{name}: {len(values)} values for {len(keys)} keys. "
                                      f"Give exactly one {name[:-1]} per image, in the same order as the keys.")
    return keys


def _label_kind(keys: list[str], labels: Sequence[Any]) -> str:
    """'classes' when every label is a collection of class names, 'label' when every label is one value."""
    is_collection = [isinstance(label, _COLLECTION_TYPES) for label in labels]
    if all(is_collection):
        return "classes"
    if any(is_collection):
        index = is_collection.index(not is_collection[0])
        raise errors.DatasetError(f"labels: {keys[0]} has {labels[0]!r} but {keys[index]} has {labels[index]!r}. "
                                  "Give either a set of class names for every image, or one label for every image.")
    for key, label in zip(keys, labels):
        if label is None or (isinstance(label, str) and not label.strip()):
            raise errors.DatasetError(f"labels: {key} has no label ({label!r}). Label the image, or leave it out.")
    return "label"


# ---------------------------------------------------------------- strata


def _rarest(names: set[str], frequency: collections.Counter) -> str:
    """The name with the lowest frequency (ties: the first by name); 'background' for an empty set."""
    if not names:
        return BACKGROUND
    return min(names, key=lambda name: (frequency[name], name))


def _units(keys: list[str], labels: Sequence[Any], groups: Sequence[str] | None,
           kind: str) -> dict[str, tuple[list[str], str]]:
    """{unit id: (its keys, its stratum)}; a unit is a group, or a single key when there are no groups."""
    if kind == "classes":
        label_sets = [{str(name) for name in label} for label in labels]
        frequency = collections.Counter(name for names in label_sets for name in names)
    else:
        label_sets = [{str(label)} for label in labels]
        frequency = collections.Counter(str(label) for label in labels)
    if groups is None:
        return {key: ([key], _rarest(names, frequency)) for key, names in zip(keys, label_sets)}
    members: dict[str, list[int]] = collections.defaultdict(list)
    for index, group in enumerate(groups):
        if group is None or (isinstance(group, str) and not group.strip()):
            raise errors.DatasetError(f"groups: {keys[index]} has no group ({group!r}). "
                                      "Give every image its group (e.g. patient ID).")
        members[str(group)].append(index)
    units = {}
    for group, indices in members.items():
        if kind == "classes":
            stratum = _rarest(set().union(*(label_sets[index] for index in indices)), frequency)
        else:
            votes = collections.Counter(str(labels[index]) for index in indices)
            stratum = min(votes, key=lambda label: (-votes[label], frequency[label], label))
        units[group] = ([keys[index] for index in indices], stratum)
    return units


def _stratified_by(kind: str, grouped: bool) -> str:
    if kind == "classes":
        return f"classes present (rarest class per {'group' if grouped else 'image'})"
    return "label (most common label per group)" if grouped else "label"


# ---------------------------------------------------------------- quotas and assignment


def _round_half_up(value: float) -> int:
    """2.5 -> 3 (Python's round() would give 2: banker's rounding surprises people)."""
    return int(math.floor(value + 0.5))


def _quotas(sizes: dict[str, int], fraction: float, total: int) -> dict[str, int]:
    """Keys per stratum for one split: ``round(fraction * total)`` shared by largest remainders.

    Args:
        sizes: {stratum: number of keys still unassigned}.
        fraction: the split's fraction of all keys.
        total: the number of all keys (the base of the fraction).
    """
    target = min(_round_half_up(fraction * total), sum(sizes.values()))
    exact = {stratum: fraction * total * size / max(1, sum(sizes.values())) for stratum, size in sizes.items()}
    quotas = {stratum: int(math.floor(value)) for stratum, value in exact.items()}
    by_remainder = sorted(exact, key=lambda stratum: (-(exact[stratum] - quotas[stratum]), stratum))
    for stratum in by_remainder[:max(0, target - sum(quotas.values()))]:
        quotas[stratum] += 1
    return quotas


def _take(units: list[tuple[str, int]], quota: int, minimum_units: int, keep_units: int) -> list[str]:
    """Unit ids chosen (in shuffled order) so their keys come closest to ``quota``.

    Args:
        units: shuffled (unit id, number of keys) pairs of one stratum.
        quota: keys wanted.
        minimum_units: choose at least this many units (0 or 1) even when the quota is 0.
        keep_units: leave at least this many units unchosen (for training).
    """
    chosen, taken = [], 0
    for unit, size in units:
        if len(units) - len(chosen) <= keep_units:
            break
        if abs(taken + size - quota) < abs(taken - quota):
            chosen.append(unit)
            taken += size
    if len(chosen) < minimum_units and len(units) > keep_units:
        chosen.append(min(units, key=lambda pair: pair[1])[0])  # the smallest unit overshoots least
    return chosen


def _assign(units: dict[str, tuple[list[str], str]], fractions: dict[str, float],
            rng: np.random.Generator) -> dict[str, str]:
    """{unit id: split name}: validation first, then test, the rest training."""
    by_stratum: dict[str, list[str]] = collections.defaultdict(list)
    for unit in sorted(units):
        by_stratum[units[unit][1]].append(unit)
    shuffled = {stratum: [members[index] for index in rng.permutation(len(members))]
                for stratum, members in sorted(by_stratum.items())}
    total = sum(len(unit_keys) for unit_keys, _ in units.values())
    assignment = {unit: "train" for unit in units}
    for name, minimum_size in (("validation", 2), ("test", 3)):
        if fractions[name] <= 0:
            continue
        free = {stratum: [unit for unit in members if assignment[unit] == "train"]
                for stratum, members in shuffled.items()}
        quotas = _quotas({stratum: sum(len(units[unit][0]) for unit in members) for stratum, members in free.items()},
                         fractions[name], total)
        for stratum, members in free.items():
            minimum = 1 if len(shuffled[stratum]) >= minimum_size else 0
            pairs = [(unit, len(units[unit][0])) for unit in members]
            for unit in _take(pairs, quotas[stratum], minimum, keep_units=1):
                assignment[unit] = name
    return assignment


def split_dataset(keys: Sequence[str], labels: Sequence[Any], validation_fraction: float,
                  test_fraction: float = 0.0, seed: int = 42, groups: Sequence[str] | None = None,
                  group_name: str = "group") -> Split:
    """Split keys into training, validation and (optionally) test, stratified and group-aware.

    Nothing is read or written: this only decides which key goes where (see the module docstring
    for the rules). Save the result with ``Split.save``.

    Args:
        keys: one unique name per image (file stem or file name).
        labels: per key either a collection (set/list/tuple) of class names present (detection; an
            empty one is a background image) or one label (str or int; classification, grading).
        validation_fraction: share of the keys for validation, 0 to below 1 (0 = no validation).
        test_fraction: share of the keys for a test set, 0 to below 1; the two sum to below 1.
        seed: seed of the shuffle; the same inputs and seed give the same split.
        groups: per key a group id (e.g. patient ID); a group never straddles two splits.
        group_name: what the groups are, recorded as ``grouped_by`` (e.g. "patient_id").

    Returns:
        The split, key lists sorted.

    Raises:
        ConfigError: a fraction outside [0, 1) or fractions summing to 1 or more.
        DatasetError: duplicate or empty keys, labels/groups not one per key, mixed label kinds, a missing label.
    """
    validation_fraction, test_fraction = _check_fractions(validation_fraction, test_fraction)
    keys = _check_keys(keys, labels, groups)
    kind = _label_kind(keys, labels) if keys else "label"
    units = _units(keys, labels, groups, kind)
    assignment = _assign(units, {"validation": validation_fraction, "test": test_fraction},
                         np.random.default_rng(int(seed)))
    lists: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    stratum_counts: dict[str, dict[str, int]] = {}
    for unit, (unit_keys, stratum) in units.items():
        lists[assignment[unit]].extend(unit_keys)
        counts = stratum_counts.setdefault(stratum, {name: 0 for name in SPLIT_NAMES})
        counts[assignment[unit]] += len(unit_keys)
    return Split(train=sorted(lists["train"]), validation=sorted(lists["validation"]), test=sorted(lists["test"]),
                 seed=int(seed), validation_fraction=validation_fraction, test_fraction=test_fraction,
                 stratified_by=_stratified_by(kind, groups is not None),
                 grouped_by=group_name if groups is not None else None,
                 stratum_counts={stratum: stratum_counts[stratum] for stratum in sorted(stratum_counts)})


# ---------------------------------------------------------------- reading the record


def _malformed(path: pathlib.Path, problem: str) -> errors.DatasetError:
    return errors.DatasetError(f"{path}: {problem}. This split record is damaged: restore it, "
                               "or choose a new model_name to make a new split.")


def _field(record: dict, name: str, types: tuple, path: pathlib.Path) -> Any:
    value = record.get(name)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise _malformed(path, f"field {name!r} is {value!r}")
    return value


def load_split(path: str | pathlib.Path) -> Split:
    """Read a split written by ``Split.save``.

    Args:
        path: the ``split.json`` file, or the folder holding it.

    Raises:
        DatasetError: naming the file, when it is missing, unreadable, not JSON, lacks a field,
            has a field of the wrong type, or lists a key in two splits.
    """
    path = _split_file(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise errors.DatasetError(f"{path}: cannot read the split record ({error.strerror or error}). "
                                  "Check the path, or choose a new model_name to make a new split.") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _malformed(path, f"not valid JSON ({error})") from error
    if not isinstance(record, dict):
        raise _malformed(path, "the top level is not a JSON object")
    lists = {}
    for name in SPLIT_NAMES:
        values = _field(record, name, (list,), path)
        if not all(isinstance(key, str) for key in values):
            raise _malformed(path, f"field {name!r} holds something other than file names")
        lists[name] = sorted(values)
    seen = collections.Counter(key for values in lists.values() for key in values)
    twice = sorted(key for key, count in seen.items() if count > 1)
    if twice:
        raise _malformed(path, f"{', '.join(twice[:3])} appear in two splits (or twice)")
    grouped_by = record.get("grouped_by")
    if grouped_by is not None and not isinstance(grouped_by, str):
        raise _malformed(path, f"field 'grouped_by' is {grouped_by!r}")
    stratum_counts = record.get("stratum_counts", {})
    if not isinstance(stratum_counts, dict):
        raise _malformed(path, "field 'stratum_counts' is not an object")
    return Split(**lists, seed=_field(record, "seed", (int,), path),
                 validation_fraction=float(_field(record, "validation_fraction", (int, float), path)),
                 test_fraction=float(_field(record, "test_fraction", (int, float), path)),
                 stratified_by=_field(record, "stratified_by", (str,), path), grouped_by=grouped_by,
                 stratum_counts=stratum_counts)
