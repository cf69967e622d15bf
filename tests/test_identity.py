"""One model identity (advprune.identity), and the code a rule depends on read from the imports (advprune.imports)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from advprune import artefacts
from advprune.identity import FULL, ModelKey, normalise_keep, run_pattern
from advprune.imports import module_files

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def test_every_model_of_the_mnist_record_has_the_directory_its_key_names() -> None:
    """The MNIST CPU record's models (docs/results/mnist-cpu) were trained before advprune.identity existed: their
    directories must be what ModelKey writes today, or the workflow would replan them."""
    models = pd.read_csv(REPO / "docs/results/mnist-cpu/models.csv")
    assert len(models) > 0
    for row in models.to_dict("records"):
        key = ModelKey.create(
            row["dataset"], row["strategy"], row["keep"],
            None if pd.isna(row["prune_epoch"]) else int(row["prune_epoch"]), int(row["seed"]),
            precision=row["precision"],
            schedule=None if pd.isna(row["schedule_after_pruning"]) else row["schedule_after_pruning"],
        )  # fmt: skip
        assert key.directory == row["run_dir"]
        assert ModelKey.from_run_name(key.dataset, key.precision, key.run, key.seed) == key


@pytest.mark.parametrize("keep", [0.30000000000000004, 0.3, 0.29999999999999999])
def test_keep_is_normalised_once_to_what_the_directory_writes(keep: float) -> None:
    key = ModelKey.create("mnist", "random", keep, 3, 0)
    assert key.keep == 0.3 == normalise_keep(keep)
    assert key.directory == "results/models/mnist/fp32/random_keep0.3_e3_rescale/seed0"


# Keeps that `:g` writes as decimals: below 1e-4 it writes an exponent (9.9e-05), which no run name parses.
KEEPS = st.floats(min_value=1e-4, max_value=1.0, exclude_max=True, allow_nan=False)


@given(first=KEEPS, second=KEEPS)
@example(first=0.45, second=0.5)  # one decimal would write both as 0.5
@example(first=0.333333, second=0.3333333)  # six significant digits: one keep
def test_distinct_keeps_get_distinct_directories_and_parse_back_to_their_key(first: float, second: float) -> None:
    keys = [ModelKey.create("mnist", "low+high", keep, 3, 0) for keep in (first, second)]
    for key in keys:
        assert ModelKey.from_run_name(key.dataset, key.precision, key.run, key.seed) == key
    assert (keys[0].directory == keys[1].directory) == (normalise_keep(first) == normalise_keep(second))


def test_every_keep_one_request_is_the_one_full_data_model() -> None:
    keys = {ModelKey.create("mnist", s, 1.0, e, 2, schedule=p) for s in ("random", "low") for e in (None, 3)
            for p in ("rescale", "fixed")}  # fmt: skip
    assert keys == {ModelKey("mnist", "fp32", FULL, 1.0, None, None, 2)}
    assert keys.pop().directory == "results/models/mnist/fp32/full/seed2"


def test_the_run_pattern_matches_exactly_the_run_names_keys_write() -> None:
    import re

    names = [ModelKey.create("cifar10", s, k, 3, 0, schedule=p).run
             for s in ("random", "low+high", "mean-distance") for k in (0.2, 0.45, 1.0) for p in ("rescale", "fixed")]
    assert all(re.fullmatch(run_pattern(), name) for name in names)
    assert not re.fullmatch(run_pattern(), "median_keep0.4_e3_rescale")
    with pytest.raises(ValueError, match="not a run name"):
        ModelKey.from_run_name("mnist", "fp32", "random_0.4", 0)


@pytest.mark.parametrize("precision, schedule", [("bf16", "rescale"), ("fp32", "fixed")])
def test_a_key_refuses_settings_of_another_precision_or_schedule(precision: str, schedule: str) -> None:
    """A key names its directory's precision and schedule after pruning: settings naming another are refused, the
    same settings pass; the full-data model has no schedule, so any schedule after pruning passes with it."""
    settings = {"precision": "fp32", "schedule_after_pruning": "rescale", "epochs": 4}
    key = ModelKey.create("digits-mnist", "random", 0.5, 1, 0, precision=precision, schedule=schedule)
    with pytest.raises(ValueError, match="does not match the settings' precision"):
        key.check_settings(settings)
    key.check_settings({**settings, "precision": precision, "schedule_after_pruning": schedule})
    full = ModelKey.create("digits-mnist", FULL, 1.0, None, 0, precision=precision)
    full.check_settings({**settings, "precision": precision, "schedule_after_pruning": schedule})
    full.check_settings({**settings, "precision": precision, "schedule_after_pruning": "fixed"})
    if precision != "fp32":
        with pytest.raises(ValueError, match="does not match the settings' precision"):
            full.check_settings(settings)
    # The prefix the key forks from checks the same two settings (advprune.prefix.prefix_trainer).
    from advprune.prefix import PrefixKey

    with pytest.raises(ValueError, match="does not match the settings' precision"):
        PrefixKey.of(key).check_settings(settings)
    PrefixKey.of(key).check_settings({**settings, "precision": precision, "schedule_after_pruning": schedule})


def test_the_trainer_refuses_a_key_of_other_settings() -> None:
    """A key names its directory's precision and schedule: training other settings into it would give that directory
    another model."""
    import numpy as np
    import torch

    from advprune import settings
    from advprune.training import Trainer

    resolved = settings.resolve("digits-mnist", overrides=["epochs=2"], schedule_after_pruning="fixed")
    key = ModelKey.create("digits-mnist", "random", 0.5, 1, 0)  # rescale
    with pytest.raises(ValueError, match="does not match the settings"):
        Trainer(key, resolved, np.zeros((4, 8, 8, 1), np.uint8), np.arange(4), out_dir=Path("unused"),
                device=torch.device("cpu"), dataset_sha256="0" * 64, show_progress=False)  # fmt: skip


# -- advprune.imports ---------------------------------------------------------------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_module_files_follows_every_kind_of_import(tmp_path: Path) -> None:
    """A package made here: absolute, relative, function-level and `from package import module` imports all count;
    a name imported from a module is not a module; other packages are not followed."""
    src = _package(tmp_path, {
        "advprune/__init__.py": "",
        "advprune/a.py": "import json\nfrom advprune.b import thing\n\ndef f():\n    from . import lazy\n",
        "advprune/b.py": "from .sub.c import value\nthing = 1\n",
        "advprune/lazy.py": "",
        "advprune/sub/__init__.py": "",
        "advprune/sub/c.py": "from .. import d\nvalue = 2\n",
        "advprune/d.py": "",
        "advprune/unused.py": "",
    })  # fmt: skip
    found = {path.relative_to(src).as_posix() for path in module_files(src, ["advprune.a"])}
    assert found == {"advprune/__init__.py", "advprune/a.py", "advprune/b.py", "advprune/lazy.py",
                     "advprune/sub/__init__.py", "advprune/sub/c.py", "advprune/d.py"}  # fmt: skip
    with pytest.raises(ValueError, match="no module 'advprune.missing'"):
        module_files(src, ["advprune.missing"])


# Artefacts with the same code (fig1 ... fig7: the registry, render and figures) are checked once.
CODE_MODULES = sorted({tuple(a.code_modules) for a in artefacts.ARTEFACTS})


@pytest.mark.parametrize("modules", CODE_MODULES, ids=lambda modules: modules[-1])
def test_an_artefacts_code_holds_every_module_python_loads_for_it(modules: tuple[str, ...]) -> None:
    """The oracle is Python itself: import the artefact's modules in a fresh interpreter and list the package's
    modules it loaded. The files read from the source must include them all (they may hold more: imports inside
    functions load only when called)."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()"
        " if (n == 'advprune' or n.startswith('advprune.')) and getattr(m, '__file__', None))))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                       env={"PYTHONPATH": str(SRC), "PATH": ""}).stdout)  # fmt: skip
    derived = {path.resolve() for path in module_files(SRC, modules)}
    assert {Path(path).resolve() for path in loaded} <= derived
    assert SRC / "advprune/training.py" not in derived  # a figure never depends on the trainer


@pytest.mark.parametrize("configfiles", [("config.yaml",), ("config.yaml", "profiles/demo/demo.yaml")])
def test_the_command_words_of_every_planned_model_and_prefix_read_back_to_its_key(configfiles) -> None:
    """ModelKey.argv / from_args and PrefixKey.argv / from_args are pairs: what the workflow's rules pass to `advprune
    train` and `advprune prefix` (plan.training_words, plan.prefix_words), parsed by the real command line and
    resolved as the commands resolve it, is the key the plan holds; and each directory reads back to its key."""
    from advprune import plan
    from advprune.cli import build_parser
    from advprune.prefix import PrefixKey
    from advprune.settings import resolve

    config = plan.load_config([REPO / name for name in configfiles])
    parser = build_parser()

    def parsed(command: str, words: list[str]):
        args = parser.parse_args([command, *words, "--out", "unused"])
        settings = resolve(args.dataset, args.config, args.overrides, precision=args.precision,
                           schedule_after_pruning=args.schedule_after_pruning)  # fmt: skip
        return args, settings

    models = plan.all_models(config)
    assert len(models) > 10
    for key in models:
        assert ModelKey.from_args(*parsed("train", plan.training_words(key, config))) == key
        assert ModelKey.from_run_name(key.dataset, key.precision, key.run, key.seed) == key
    prefixes = plan.prefixes_of(models)
    assert prefixes
    for prefix in prefixes:
        assert PrefixKey.from_args(*parsed("prefix", plan.prefix_words(prefix, config))) == prefix
