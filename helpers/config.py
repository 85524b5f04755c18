"""Typed, validated configuration shared by every task's config dataclass.

A task config is a ``dataclasses.dataclass`` whose fields carry metadata made by ``field()``:
a help sentence, numeric bounds or a list of choices. Form values become a config through
``config_from_form``: a value left ``None`` (or ``""`` for text) means "use the preset's value",
so a preset never silently overwrites what the user typed. The resolved config is written to
``config.yaml`` in the run folder and printed verbatim in every PDF report.
"""

from __future__ import annotations

import dataclasses
import difflib
import pathlib
import typing
from typing import Any, Mapping

import yaml

from helpers import errors

PRESET_SENTINELS = (None, "")


def field(default: Any, help: str, minimum: float | None = None, maximum: float | None = None,
          choices: tuple | None = None) -> Any:
    """A dataclass field with validation metadata.

    Args:
        default: value used when neither the form nor the preset gives one.
        help: one plain-language sentence shown in errors and docs.
        minimum, maximum: inclusive numeric bounds, or None.
        choices: allowed values, or None.
    """
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


def _field_types(config_class: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass (annotations may be strings)."""
    return typing.get_type_hints(config_class)


def _coerce(name: str, value: Any, expected: Any) -> Any:
    """Convert a form value to the field's type; ConfigError naming the field otherwise."""
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        raise errors.ConfigError(f"{name}: expected True or False, got {value!r}. Tick or untick the box.")
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise errors.ConfigError(f"{name}: expected a whole number, got {value!r}. Type a number such as 8.")
        try:
            number = float(value)
        except ValueError:
            raise errors.ConfigError(f"{name}: expected a whole number, got {value!r}. Type a number such as 8.") from None
        if number != int(number):
            raise errors.ConfigError(f"{name}: expected a whole number, got {value!r}. Remove the decimals.")
        return int(number)
    if expected is float:
        if isinstance(value, bool):
            raise errors.ConfigError(f"{name}: expected a number, got {value!r}. Type a number such as 0.001.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise errors.ConfigError(f"{name}: expected a number, got {value!r}. Type a number such as 0.001.") from None
    if expected is str:
        return str(value).strip()
    return value


def validate_config(config: Any) -> Any:
    """Check every field of a config dataclass against its type, bounds and choices.

    Returns a new instance with values coerced to their declared types (e.g. ``"8"`` -> 8).
    Raises ``ConfigError`` naming the first field that is wrong and what to type instead.
    """
    types = _field_types(type(config))
    values = {}
    for item in dataclasses.fields(config):
        value = _coerce(item.name, getattr(config, item.name), types[item.name])
        choices = item.metadata.get("choices")
        if choices is not None and value not in choices:
            raise errors.ConfigError(
                f"{item.name}: {value!r} is not one of {', '.join(map(repr, choices))}. Choose one of these.")
        minimum, maximum = item.metadata.get("minimum"), item.metadata.get("maximum")
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise errors.ConfigError(
                f"{item.name}: {value!r} is outside the allowed range {minimum}–{maximum}. "
                f"{item.metadata.get('help', '')}".strip())
        values[item.name] = value
    validated = type(config)(**values)
    check = getattr(validated, "check", None)
    if callable(check):  # cross-field rules live on the task's config class
        check()
    return validated


def reject_unknown(config_class: type, values: Mapping[str, Any]) -> None:
    """Raise ConfigError for a key that is not a field, suggesting the closest field name."""
    names = [item.name for item in dataclasses.fields(config_class)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known fields: {', '.join(names)}."
            raise errors.ConfigError(f"{key}: unknown setting for {config_class.__name__}.{hint}")


def config_from_form(config_class: type, preset: str = "default", **form_values: Any) -> Any:
    """Build a validated config from form fields on top of a named preset.

    Args:
        config_class: a task config dataclass with a ``PRESETS: dict[str, dict]`` class attribute.
        preset: name of the preset whose values fill fields left blank.
        **form_values: field values from the notebook form; ``None`` or ``""`` means
            "take it from the preset" (or the field default when the preset does not set it).

    Returns:
        The validated config instance.
    """
    presets = getattr(config_class, "PRESETS", {"default": {}})
    if preset not in presets:
        raise errors.ConfigError(f"preset: {preset!r} is not one of {', '.join(map(repr, presets))}. Choose one of these.")
    reject_unknown(config_class, form_values)
    values = dict(presets[preset])
    values.update({key: value for key, value in form_values.items() if value not in PRESET_SENTINELS})
    if "preset" in {item.name for item in dataclasses.fields(config_class)}:
        values["preset"] = preset
    return validate_config(config_class(**values))


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config, in field order (paths as strings)."""
    return {key: (str(value) if isinstance(value, pathlib.PurePath) else value)
            for key, value in dataclasses.asdict(config).items()}


def config_to_yaml(config: Any) -> str:
    """The YAML text written to ``config.yaml`` and printed verbatim in reports.

    Its comment header names the config class and the helpers version (with the git commit when
    known) that wrote it; comments are not settings, so resuming compares only the values.
    """
    from helpers import environment  # local: environment is only needed for this header

    header = f"# {type(config).__name__}\n# written by dl4cells-helpers {environment.helpers_version()}\n"
    return header + yaml.safe_dump(config_to_dict(config), sort_keys=False, allow_unicode=True)


def save_config(config: Any, path: str | pathlib.Path) -> pathlib.Path:
    """Write ``config_to_yaml(config)`` to ``path`` (UTF-8) and return the path."""
    path = pathlib.Path(path)
    path.write_text(config_to_yaml(config), encoding="utf-8")
    return path


def load_config(config_class: type, path: str | pathlib.Path) -> Any:
    """Read a ``config.yaml`` written by ``save_config`` back into a validated config."""
    path = pathlib.Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise errors.ConfigError(f"{path}: cannot be read as a configuration ({error}). Delete nothing; "
                                 f"choose a new model_name to start a fresh run.") from None
    reject_unknown(config_class, values)
    return validate_config(config_class(**values))


def describe_fields(config_class: type) -> list[tuple[str, str]]:
    """(field name, help sentence) pairs, for documentation and report appendices."""
    return [(item.name, item.metadata.get("help", "")) for item in dataclasses.fields(config_class)]
