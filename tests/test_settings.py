"""Training settings (`advprune.settings`): SPEC's defaults, overrides, config-file layering, validation."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from advprune import settings
from advprune.models import MODELS

MONITOR = {
    "n_points": 512, "pgd_steps": 10, "pgd_step_fraction": 0.25, "pgd_restarts": 1,
    "collapse_drop": 0.20, "collapse_floor": 0.05,
}


def test_known_datasets() -> None:
    assert set(settings.known_datasets()) == {"mnist", "cifar10", "digits-mnist", "digits-cifar"}


def test_mnist_defaults_are_specs_table() -> None:
    s = settings.resolve("mnist")
    assert s["model"] == "mnist_net"
    assert s["epochs"] == 10
    assert s["batch_size"] == 100
    assert s["optimizer"] == "adam"
    assert s["lr_max"] == 5e-3
    assert s["lr_peak_fraction"] == 0.4
    assert s["eps"] == 0.3
    assert s["alpha"] == 0.375
    assert s["clip_random_start"] is False
    assert s["crop_padding"] == 0
    assert s["horizontal_flip"] is False
    assert s["normalization"] is None
    assert s["weight_decay"] == 0.0


def test_cifar10_defaults_are_specs_table() -> None:
    s = settings.resolve("cifar10")
    assert s["model"] == "preact_resnet18"
    assert s["epochs"] == 15
    assert s["batch_size"] == 128
    assert s["optimizer"] == "sgd"
    assert s["momentum"] == 0.9
    assert s["weight_decay"] == 5e-4
    assert s["lr_max"] == 0.2
    assert s["lr_peak_fraction"] == 0.5
    assert s["eps"] == float(Fraction(8, 255)) and isinstance(s["eps"], float)
    assert s["alpha"] == float(Fraction(10, 255)) and isinstance(s["alpha"], float)
    assert s["clip_random_start"] is True
    assert s["crop_padding"] == 4
    assert s["horizontal_flip"] is True
    assert s["normalization"] == {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616]}


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "digits-mnist", "digits-cifar"])
def test_common_defaults(dataset: str) -> None:
    s = settings.resolve(dataset)
    assert s["training_attack"] == "rs-fgsm"
    assert s["precision"] == "fp32"
    assert s["schedule_after_pruning"] == "rescale"
    # SPEC: PGD 10 steps, step eps/4, one restart, 512 points, 20 points / 5% (the digits stand-ins may watch fewer).
    if dataset in ("mnist", "cifar10"):
        assert s["monitor"] == MONITOR
    else:
        assert {k: v for k, v in s["monitor"].items() if k != "n_points"} == {
            k: v for k, v in MONITOR.items() if k != "n_points"
        }
        assert 1 <= s["monitor"]["n_points"] <= 512
    assert s["model"] in MODELS
    settings.validate(s)


def test_digits_variants_follow_their_recipes_with_a_smaller_eps() -> None:
    mnist, cifar = settings.resolve("mnist"), settings.resolve("cifar10")
    dm, dc = settings.resolve("digits-mnist"), settings.resolve("digits-cifar")
    for key in ("epochs", "batch_size", "optimizer", "lr_max", "lr_peak_fraction", "clip_random_start",
                "horizontal_flip", "momentum", "weight_decay"):
        assert dm[key] == mnist[key], key
        assert dc[key] == cifar[key], key
    # eps chosen so that full-data AutoAttack accuracy lands in 20-80% (defaults.yaml); alpha keeps 1.25 * eps.
    assert (dm["eps"], dc["eps"]) == (0.12, 0.1)
    for s in (dm, dc):
        assert s["alpha"] == pytest.approx(1.25 * s["eps"])
    assert dm["crop_padding"] == 0 and dc["crop_padding"] == 1


def test_resolve_returns_a_fresh_copy() -> None:
    first = settings.resolve("cifar10")
    first["normalization"]["mean"][0] = 123.0
    first["monitor"]["n_points"] = 1
    second = settings.resolve("cifar10")
    assert second["normalization"]["mean"][0] == 0.4914
    assert second["monitor"]["n_points"] == 512


# -- overrides --------------------------------------------------------------------------------------------------------
def test_key_value_overrides() -> None:
    s = settings.resolve(
        "mnist",
        overrides=["epochs=3", "optimizer=sgd", "eps=0.1", "clip_random_start=true", "normalization=null",
                   "training_attack=none"],
    )
    assert s["epochs"] == 3 and isinstance(s["epochs"], int)
    assert s["optimizer"] == "sgd"
    assert s["eps"] == 0.1
    assert s["clip_random_start"] is True
    assert s["normalization"] is None
    assert s["training_attack"] == "none"


def test_dotted_overrides_reach_nested_values() -> None:
    s = settings.resolve("mnist", overrides=["monitor.pgd_steps=5", "monitor.n_points=64"])
    assert s["monitor"]["pgd_steps"] == 5 and s["monitor"]["n_points"] == 64
    assert s["monitor"]["pgd_restarts"] == 1  # siblings untouched


def test_fraction_strings_are_read_exactly() -> None:
    s = settings.resolve("mnist", overrides=["eps=8/255", "alpha= 10 / 255", "lr_max=1/10"])
    assert s["eps"] == 8 / 255 and s["alpha"] == 10 / 255 and s["lr_max"] == 0.1


def test_scientific_notation_is_a_number() -> None:
    # YAML 1.1 (PyYAML) reads "5e-4" as a string; a user typing it on the command line means a number.
    s = settings.resolve("cifar10", overrides=["weight_decay=5e-4", "lr_max=1e-1", "monitor.collapse_floor=1E-2"])
    assert s["weight_decay"] == 5e-4 and s["lr_max"] == 0.1 and s["monitor"]["collapse_floor"] == 0.01


def test_explicit_arguments_win_and_none_is_ignored() -> None:
    s = settings.resolve("mnist", overrides=["precision=bf16"], precision="fp32", schedule_after_pruning=None)
    assert s["precision"] == "fp32"
    assert s["schedule_after_pruning"] == "rescale"
    assert settings.resolve("mnist", schedule_after_pruning="fixed")["schedule_after_pruning"] == "fixed"


def test_override_values_may_contain_equals_signs() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        settings.resolve("mnist", overrides=["optimizer=a=b"])


# -- config files -----------------------------------------------------------------------------------------------------
def _config(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_config_file_layering(tmp_path: Path) -> None:
    """defaults.common < defaults.<dataset> < file.common < file.<dataset> < overrides < explicit arguments."""
    config = _config(tmp_path, {
        "common": {"epochs": 3, "batch_size": 50, "monitor": {"pgd_steps": 7}, "precision": "bf16"},
        "mnist": {"batch_size": 20, "eps": "1/10"},
        "cifar10": {"epochs": 99},  # another dataset's section is ignored for mnist
    })
    s = settings.resolve("mnist", config, ["epochs=4"], precision="fp32")
    assert s["epochs"] == 4  # override beats file.common
    assert s["batch_size"] == 20  # file.<dataset> beats file.common
    assert s["eps"] == 0.1  # fractions in files are resolved too
    assert s["monitor"]["pgd_steps"] == 7 and s["monitor"]["n_points"] == 512  # deep merge
    assert s["precision"] == "fp32"  # explicit argument beats the file
    assert s["optimizer"] == "adam"  # untouched defaults stay
    c = settings.resolve("cifar10", config)
    assert c["epochs"] == 99 and c["batch_size"] == 50 and c["monitor"]["pgd_steps"] == 7


def test_empty_config_file_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert settings.resolve("mnist", path) == settings.resolve("mnist")


def test_config_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- epochs\n- 3\n")
    with pytest.raises(ValueError, match="mapping"):
        settings.resolve("mnist", path)


def test_config_file_with_an_unknown_section_is_refused(tmp_path: Path) -> None:
    # A typo in a section name ("mnst") or a flat key must not be silently ignored: the run would use the defaults.
    with pytest.raises(ValueError, match="mnst"):
        settings.resolve("mnist", _config(tmp_path, {"mnst": {"epochs": 3}}))
    with pytest.raises(ValueError, match="epochs"):
        settings.resolve("mnist", _config(tmp_path, {"epochs": 3}))


def test_config_file_section_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="common"):
        settings.resolve("mnist", _config(tmp_path, {"common": 3}))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        settings.resolve("mnist", tmp_path / "absent.yaml")


# -- bad values -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("epochs=0", "epochs"),
        ("epochs=-3", "epochs"),
        ("optimizer=rmsprop", "optimizer"),
        ("eps=abc", "eps"),
        ("eps=1/0", "eps"),
        ("eps=0", "eps"),
        ("eps=1.5", "eps"),
        ("alpha=-0.1", "alpha"),
        ("lr_max=0", "lr_max"),
        ("lr_peak_fraction=1", "lr_peak_fraction"),
        ("batch_size=ten", "batch_size"),
        ("batch_size=100.0", "batch_size"),  # an integral float would crash the loop's range() later
        ("epochs=2.5", "epochs"),
        ("clip_random_start=maybe", "clip_random_start"),
        ("precision=fp16", "precision"),
        ("schedule_after_pruning=cosine", "schedule_after_pruning"),
        ("training_attack=pgd", "training_attack"),
        ("momentum=1.5", "momentum"),
        ("normalization={mean: [0.5]}", "normalization"),
        ("monitor.pgd_steps=0", "monitor.pgd_steps"),
        ("monitor.collapse_drop=0", "monitor.collapse_drop"),
        ("monitor.bogus=1", "bogus"),
        ("bogus_key=1", "bogus_key"),
        ("bogus.sub=1", "bogus"),
        ("epochs", "epochs"),  # not key=value
    ],
)
def test_bad_values_raise_value_error_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ValueError) as info:
        settings.resolve("mnist", overrides=[override])
    assert key in str(info.value), str(info.value)


def test_bad_value_in_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="optimizer"):
        settings.resolve("mnist", _config(tmp_path, {"mnist": {"optimizer": "rmsprop"}}))


@pytest.mark.parametrize("dataset", ["common", "imagenet", ""])
def test_unknown_dataset_is_refused_with_the_known_ones(dataset: str) -> None:
    with pytest.raises(ValueError, match="no settings for dataset") as info:
        settings.resolve(dataset)
    for name in ("mnist", "cifar10", "digits-mnist", "digits-cifar"):
        assert name in str(info.value)


def test_frozen_settings_read_as_attributes_and_give_back_the_resolved_dict_in_its_order() -> None:
    resolved = settings.resolve("cifar10")
    frozen = settings.Settings(resolved)
    assert frozen.eps == resolved["eps"] and frozen.monitor.pgd_steps == resolved["monitor"]["pgd_steps"]
    assert frozen == resolved and resolved == frozen
    plain = frozen.as_dict()
    assert plain == resolved and list(plain) == list(resolved)  # checkpoints and train.json record this order
    assert isinstance(plain["normalization"]["mean"], list) and isinstance(plain["monitor"], dict)
    with pytest.raises(AttributeError, match="frozen"):
        frozen.eps = 0.1
    with pytest.raises(TypeError):
        frozen.monitor["pgd_steps"] = 1  # type: ignore[index]


def test_replacing_a_setting_gives_a_copy_in_the_same_order() -> None:
    frozen = settings.Settings(settings.resolve("mnist"))
    fixed = frozen.replace(schedule_after_pruning="fixed")
    assert (frozen.schedule_after_pruning, fixed.schedule_after_pruning) == ("rescale", "fixed")
    assert list(fixed) == list(frozen)
    with pytest.raises(KeyError, match="bogus"):
        frozen.replace(bogus=1)


@pytest.mark.parametrize("name", ["schedule", "precision"])
def test_the_schemas_and_the_cli_take_a_settings_values_from_its_one_owner(name: str) -> None:
    """Both schemas' enums and every CLI option that takes a schedule (precision) list schedules.SCHEDULES
    (identity.PRECISIONS) as it is: a value added to the owner reaches every place a user can name it."""
    from advprune import cli
    from advprune.identity import PRECISIONS
    from advprune.schedules import SCHEDULES

    values = {"schedule": SCHEDULES, "precision": PRECISIONS}[name]
    repo = Path(__file__).resolve().parents[1]
    enums = []

    def walk(node):
        if isinstance(node, dict):
            if set(node.get("enum", ())) & set(values):
                enums.append(tuple(node["enum"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for schema in (repo / "schemas" / "config.schema.yaml", repo / "src" / "advprune" / "settings.schema.yaml"):
        before = len(enums)
        walk(yaml.safe_load(schema.read_text()))
        assert len(enums) > before, f"{schema.name} names no {name}"
    assert all(enum == values for enum in enums), enums
    subparsers = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    options = [(command, a) for command, p in subparsers.items() for a in p._actions if name in a.dest]
    assert {"train", "prefix", "claims"} <= {command for command, _ in options}
    assert all(tuple(a.choices) == values for _, a in options), [(c, a.dest, a.choices) for c, a in options]
