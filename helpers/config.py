"""Typed, validated configuration shared by every task's config dataclass.

A task config is a ``dataclasses.dataclass`` whose fields carry metadata made by ``field()``:
a help sentence, numeric bounds or a list of choices. Form values become a config through
``config_from_form``: a value left ``None`` (or ``""`` for text) means "use the preset's value",
so a preset never silently overwrites what the user typed; in the notebooks (``defaults_mean_preset``)
a field still showing the ``default`` preset's value counts as not typed. ``settings_summary`` is
the short table of what differs from the preset that the data check prints. The resolved config is written to
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


def decimal_text(text: str) -> str:
    """A number typed in a text field, as Python reads numbers: spaces stripped, one decimal comma made a point.

    ``"0,001"`` -> ``"0.001"``, ``" 8 "`` -> ``"8"``; text with both a comma and a point, or several
    commas, is returned stripped and left to fail as "not a number".
    """
    text = text.strip()
    if text.count(",") == 1 and "." not in text:
        return text.replace(",", ".")
    return text


def _coerce(name: str, value: Any, expected: Any) -> Any:
    """Convert a form value to the field's type; ConfigError naming the field otherwise."""
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
            return value.strip().lower() in ("true", "yes")
        raise errors.ConfigError(f"{name}: expected True or False, got {value!r}. Tick or untick the box.")
    if isinstance(value, tuple) and expected in (int, float):  # Python read "0,001" typed in a raw field
        raise errors.ConfigError(f"{name}: got {value!r}, which is what a decimal comma becomes in a raw field. "
                                 f"Type the number with a decimal point (0.001) in a text field.")
    # Text fields hold numbers as typed: read "0,001" as 0.001; messages quote what was typed.
    number_text = decimal_text(value) if isinstance(value, str) else value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise errors.ConfigError(f"{name}: expected a whole number, got {value!r}. Type a number such as 8.")
        try:
            number = float(number_text)
        except ValueError:
            raise errors.ConfigError(f"{name}: expected a whole number, got {value!r}. Type a number such as 8.") from None
        if number != int(number):
            raise errors.ConfigError(f"{name}: expected a whole number, got {value!r}. Remove the decimals.")
        return int(number)
    if expected is float:
        if isinstance(value, bool):
            raise errors.ConfigError(f"{name}: expected a number, got {value!r}. Type a number such as 0.001.")
        try:
            return float(number_text)
        except (TypeError, ValueError):
            raise errors.ConfigError(f"{name}: expected a number, got {value!r}. Type a number such as 0.001 "
                                     f"(a decimal comma, 0,001, works too).") from None
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


def _left_at_default(item: dataclasses.Field, expected: Any, value: Any) -> bool:
    """True when a form value is blank or equals the field's default (the ``default`` preset's value).

    A value that cannot be read as the field's type is not "at the default": validation names it.
    """
    if value in PRESET_SENTINELS:
        return True
    try:
        return _coerce(item.name, value, expected) == item.default
    except errors.ConfigError:
        return False


def config_from_form(config_class: type, preset: str = "default", defaults_mean_preset: bool = False,
                     **form_values: Any) -> Any:
    """Build a validated config from form fields on top of a named preset.

    Args:
        config_class: a task config dataclass with a ``PRESETS: dict[str, dict]`` class attribute.
        preset: name of the preset whose values fill fields left blank.
        defaults_mean_preset: the notebooks' rule. Their forms show the ``default`` preset's values,
            so a field still showing that value was not changed by the user and takes the chosen
            preset's value (``quick`` shortens the run); a field the user changed always wins.
            False (programs): only ``None`` and ``""`` take the preset's value.
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
    if defaults_mean_preset:
        types, fields = _field_types(config_class), {item.name: item for item in dataclasses.fields(config_class)}
        form_values = {key: value for key, value in form_values.items()
                       if not (key in presets[preset] and _left_at_default(fields[key], types[key], value))}
    values.update({key: value for key, value in form_values.items() if value not in PRESET_SENTINELS})
    if "preset" in {item.name for item in dataclasses.fields(config_class)}:
        values["preset"] = preset
    return validate_config(config_class(**values))


def is_data_field(name: str) -> bool:
    """True for the fields that say where the data and the run are (no preset sets them)."""
    return name in ("model_path", "model_name", "preset") or name.endswith(("_dir", "_csv", "_column"))


def differences_from_preset(config: Any) -> list[tuple[str, Any, Any]]:
    """``(field, value used, the preset's value)`` for every setting that differs from ``config.preset``'s.

    The data fields (``is_data_field``) are left out: they are the user's, not a preset's.
    """
    preset_values = {item.name: item.default for item in dataclasses.fields(config)}
    preset_values.update(type(config).PRESETS[config.preset])
    return [(name, getattr(config, name), preset_value) for name, preset_value in preset_values.items()
            if not is_data_field(name) and getattr(config, name) != preset_value]


def setting_text(value: Any) -> str:
    """A setting as the forms show it: ``0.0001`` not ``1e-04`` rounded, ``(empty)`` for ``""``."""
    if isinstance(value, float):
        return f"{value:.10g}"
    return "(empty)" if value == "" else str(value)


def settings_summary(config: Any) -> str:
    """A few lines for the notebook: the preset, what it changes, and a table of the settings that differ from it.

    The full settings stay in ``config.yaml`` and the reports; this is what the user should check.
    """
    from helpers import tables  # local: the table layout lives with the other text tables

    defaults = {item.name: item.default for item in dataclasses.fields(config)}
    preset_changes = [f"{name} {setting_text(value)}" for name, value in type(config).PRESETS[config.preset].items()
                      if value != defaults[name]]
    lines = [f"Preset: {config.preset}" + (f" (it sets {', '.join(preset_changes)})" if preset_changes else "")]
    differences = differences_from_preset(config)
    if differences:
        lines.append(f"Settings that differ from the {config.preset} preset:")
        lines.append(tables.text_table([["setting", "value used", "preset value"]] +
                                   [[name, setting_text(value), setting_text(preset_value)]
                                    for name, value, preset_value in differences]))
    else:
        lines.append(f"Every other setting is the {config.preset} preset's.")
    lines.append("All settings are in config.yaml in the run folder.")
    return "\n".join(lines)


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


def quick_run_notice(config: Any) -> str:
    """The sentence every task prints after training, and both PDF reports repeat, for a ``quick`` run ("" otherwise).

    The quick preset (a small network from scratch, ~2 epochs) checks that data, training, export and
    QC run end to end; its model has barely learned (detection: QC mAP50 0.000 on BCCD).
    """
    if getattr(config, "preset", "") != "quick":
        return ""
    return (f"This was a quick run (preset = quick, {config.epochs} epochs): it checks that everything works, "
            f"not how well a model can learn. Choose preset = default in form 1.1 for a real model.")
