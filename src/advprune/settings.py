"""Training settings: packaged defaults (SPEC's values) + a user's config file + `key=value` overrides, validated."""

from __future__ import annotations

import copy
import functools
import re
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

FRACTION_KEYS = ("eps", "alpha", "lr_max")

# PyYAML follows YAML 1.1, which reads `5e-4` (no dot) as a string; users, and YAML 1.2, mean a number.
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

# JSON Schema's "integer" accepts 100.0; the training loop needs a real int (range(), slicing), so refuse floats.
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


@functools.lru_cache(maxsize=None)
def _load_packaged(name: str) -> dict[str, Any]:
    # Cached: the workflow resolves settings for every job while it builds its DAG.
    return yaml.safe_load(resources.files("advprune").joinpath(name).read_text())


# Settings sections of datasets registered from outside the package (register_dataset).
_REGISTERED: dict[str, dict[str, Any]] = {}


def defaults() -> dict[str, Any]:
    return copy.deepcopy(_load_packaged("defaults.yaml") | _REGISTERED)


def register_dataset(name: str, section: dict[str, Any], *, based_on: str | None = None) -> None:
    """Training settings for a dataset added by a plugin: `section` (the layout of a defaults.yaml section), on top
    of an existing dataset's section when `based_on` names one. Checked when a run resolves them."""
    if name in defaults():
        raise ValueError(f"settings for dataset {name!r} already exist")
    if based_on is not None and (based_on == "common" or based_on not in defaults()):
        raise ValueError(f"based_on: no settings for dataset {based_on!r}; known: {', '.join(known_datasets())}")
    merged = defaults()[based_on] if based_on is not None else {}
    deep_update(merged, section)
    _REGISTERED[name] = merged


def known_datasets() -> list[str]:
    return [name for name in defaults() if name != "common"]


def resolve(
    dataset: str,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    **explicit: Any,
) -> dict[str, Any]:
    """The settings of one training run, from lowest to highest priority:
    defaults.yaml (`common`, then the dataset's section), the config file (same layout), `key=value` overrides
    (dotted keys reach nested values: `monitor.pgd_steps=5`), then explicit keyword arguments that are not None.
    """
    layers = [defaults()]
    if config_file is not None:
        user = _user_yaml(Path(config_file).read_text()) or {}
        if not isinstance(user, dict):
            raise ValueError(f"{config_file}: expected a mapping of sections (common, <dataset>)")
        sections = ["common", *known_datasets()]
        unknown = [str(name) for name in user if name not in sections]
        if unknown:
            # A misspelt section would otherwise be ignored without a word, and the run would use the defaults.
            raise ValueError(f"{config_file}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sections)}")
        for name, section in user.items():
            if section is not None and not isinstance(section, dict):
                raise ValueError(f"{config_file}: section {name} must be a mapping of settings, got {section!r}")
        layers.append(user)
    if dataset not in layers[0] or dataset == "common":
        raise ValueError(f"no settings for dataset {dataset!r}; known: {', '.join(known_datasets())}")

    settings: dict[str, Any] = {}
    for layer in layers:
        for section in ("common", dataset):
            deep_update(settings, layer.get(section) or {})
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(settings, key, value)
    for key, value in explicit.items():
        if value is not None:
            settings[key] = value
    for key in FRACTION_KEYS:
        settings[key] = _as_number(key, settings.get(key))
    validate(settings)
    return settings


def validate(settings: dict[str, Any]) -> None:
    schema = _load_packaged("settings.schema.yaml")
    error = jsonschema.exceptions.best_match(_Validator(schema).iter_errors(settings))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"invalid setting {where}: {error.message}")


def _as_number(key: str, value: Any) -> Any:
    """'8/255' -> 0.0313...: lets the YAML say what the paper says, without rounding by hand."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"invalid setting {key}: {value!r} is neither a number nor a fraction like 8/255") from None
    return value


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    return key.strip(), _user_yaml(raw)


def _user_yaml(text: str) -> Any:
    """yaml.safe_load, with `5e-4`-style strings read as the numbers they are."""
    return _scientific_to_float(yaml.safe_load(text))


def _scientific_to_float(value: Any) -> Any:
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {key: _scientific_to_float(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scientific_to_float(item) for item in value]
    return value


def _set_dotted(settings: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = settings
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ValueError(f"invalid setting {dotted}: {part!r} is not a section")
        node = node[part]
    node[leaf] = value


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
