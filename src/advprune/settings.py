"""Training settings: packaged defaults (docs/method.md's values) + a user's config file + `key=value` overrides, validated."""

from __future__ import annotations

import copy
import functools
import math
import re
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import jsonschema
import yaml

FRACTION_KEYS = ("eps", "alpha", "lr_max")
# Settings that once were part of every run's identity but never changed its weights, with why they went. A
# checkpoint that records one is still the same run (checkpoint.recorded_identity leaves them out of the comparison),
# so retiring one loses no unfinished run, finished model or prefix; setting one now is an error that says why.
RETIRED_SETTINGS = {
    "eval_batch_size": "no command ever read it; the evaluation's batch size is `advprune evaluate --batch-size`",
}
FLOAT32_MAX = 3.4028234663852886e38

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
        user = _user_yaml(_read_text(config_file), where=str(config_file)) or {}
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
    retired = [f"{key} ({RETIRED_SETTINGS[key]})" for key in settings if key in RETIRED_SETTINGS]
    if retired:
        raise ValueError(f"retired setting(s), remove them: {'; '.join(retired)}")
    validate(settings)
    _check_fits_images(settings, dataset)
    return settings


class Settings(Mapping[str, Any]):
    """Resolved settings, frozen: read as attributes (`settings.eps`) or keys, nested sections alike; `replace` gives
    a copy with other values. A mapping rather than a dataclass, as it keeps the resolved key order, which
    checkpoints and train.json record (a plugin's dataset may list its keys in another order)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", {key: _frozen(value) for key, value in values.items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"settings are frozen; settings.replace({name}=...) gives a copy with another value")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.as_dict() == (other.as_dict() if isinstance(other, Settings) else other)

    __hash__ = None  # type: ignore[assignment]  # equal to a dict, which has no hash either

    def __repr__(self) -> str:
        return f"Settings({self.as_dict()!r})"

    def replace(self, **changes: Any) -> "Settings":
        unknown = [key for key in changes if key not in self._values]
        if unknown:
            raise KeyError(f"no setting(s) {', '.join(unknown)}")
        return Settings({**self._values, **changes})

    def as_dict(self) -> dict[str, Any]:
        """Plain data again (dicts and lists), in the resolved order: what checkpoints, JSON and config_sha256 take."""
        return {key: _thawed(value) for key, value in self._values.items()}


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value if isinstance(value, Settings) else Settings(value)
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(item) for item in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, Settings):
        return value.as_dict()
    if isinstance(value, tuple):
        return [_thawed(item) for item in value]
    return value


def validate(settings: dict[str, Any]) -> None:
    # First, as JSON Schema cannot say it: NaN passes every bound (all its comparisons are false), and inf passes
    # one-sided ones (lr_max > 0); a NaN eps trained a "finished" model of NaN losses.
    problem = number_problem(settings)
    if problem is not None:
        raise ValueError(f"invalid setting {problem}")
    schema = _load_packaged("settings.schema.yaml")
    error = jsonschema.exceptions.best_match(_Validator(schema).iter_errors(settings))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"invalid setting {where}: {error.message}")


def _check_fits_images(settings: dict[str, Any], dataset: str) -> None:
    """What the schema cannot know: the dataset's channels and image size (else a traceback in the first step)."""
    from advprune.datasets import DATASETS

    if dataset not in DATASETS:  # settings registered by a plugin before its dataset
        return
    height, width, channels = DATASETS[dataset].image_shape
    for key in ("mean", "std"):
        values = (settings["normalization"] or {}).get(key, [])
        if len(values) not in (0, 1, channels):
            raise ValueError(
                f"invalid setting normalization.{key}: {len(values)} values for the {channels}-channel images of "
                f"{dataset} (give {'1' if channels == 1 else f'1 or {channels}'})"
            )
    if settings["crop_padding"] >= min(height, width):
        raise ValueError(
            f"invalid setting crop_padding: {settings['crop_padding']} must be below the side of the {height}x{width} "
            f"images of {dataset} (else a crop can hold no pixel of the image)"
        )


def number_problem(value: Any, where: str = "") -> str | None:
    """'<key>: .nan is not a finite number' for the first NaN or infinity in a tree of settings or config values
    (named as YAML spells them), or for a number torch cannot hold (a float beyond float32, an integer beyond 64 bits);
    None if there is none. Shared with the workflow's config check."""
    if isinstance(value, float) and not math.isfinite(value):
        spelled = ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
        return f"{where or '(top level)'}: {spelled} is not a finite number"
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:  # training computes in float32: 1e300 overflows there
        return f"{where or '(top level)'}: {value} is beyond the float32 range of training (+-{FLOAT32_MAX:.4g})"
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return f"{where or '(top level)'}: {value} does not fit in 64 bits"
    if isinstance(value, dict):
        items = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next((problem for key, item in items if (problem := number_problem(item, key)) is not None), None)


def _as_number(key: str, value: Any) -> Any:
    """'8/255' -> 0.0313...: lets the YAML say what the paper says, without rounding by hand."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError, OverflowError):
            raise ValueError(f"invalid setting {key}: {value!r} is neither a number nor a fraction like 8/255") from None
    return value


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    return key.strip(), _user_yaml(raw, where=f"override {key.strip()}")


def _read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read as a YAML text file ({_one_line(error)})") from None


def _user_yaml(text: str, where: str) -> Any:
    """yaml.safe_load, with `5e-4`-style strings read as the numbers they are; only plain data is accepted."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:  # among them a tag such as !!python/object, which safe_load does not construct
        raise ValueError(f"{where}: not valid YAML ({_one_line(error)})") from None
    _check_plain(value, where)
    return _scientific_to_float(value)


_SCALARS = (type(None), bool, int, float, str)


def _check_plain(value: Any, where: str, parents: tuple[int, ...] = ()) -> None:
    """Settings are JSON's kinds of values: a date, bytes, a set or a self-referencing alias (`&a [*a]`) would pass
    safe_load and fail later as a traceback, or recurse without end."""
    if isinstance(value, _SCALARS):
        return
    if id(value) in parents:
        raise ValueError(f"{where}: a YAML alias refers to itself")
    if isinstance(value, list):
        for item in value:
            _check_plain(item, where, (*parents, id(value)))
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _SCALARS):
                raise ValueError(f"{where}: a key of type {type(key).__name__} ({key!r}); keys are plain names")
            _check_plain(item, where, (*parents, id(value)))
    else:
        raise ValueError(
            f"{where}: a value of type {type(value).__name__} ({value!r}); settings are numbers, strings, booleans, "
            "null, lists and mappings"
        )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


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
