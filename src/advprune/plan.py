"""What the Snakemake workflow plans: the artefacts a configuration builds and their models, each model's training
command, and the checks of a configuration.

Pure Python, so it is unit-tested. The artefacts are those of the registry (advprune.artefacts), each of its kind
(advprune.kinds), which knows its models; a model's key, directory and the full-data sentinel are advprune.identity's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from advprune import artefacts as registry
from advprune.datasets import check_n_examples
from advprune.identity import ModelKey, sorted_keys
from advprune.kinds import DataArtefact, ModelGrid, active_roles, as_list, per_role, seeds_of
from advprune.prefix import PrefixKey
from advprune.pruning import STRATEGIES
from advprune.settings import deep_update, known_datasets, number_problem, resolve


def built_artefacts(config: dict[str, Any]) -> list[str]:
    """The artefacts this configuration builds (`all`), each by its kind's rule (advprune.kinds: is_built)."""
    return [artefact.name for artefact in registry.ARTEFACTS if artefact.is_built(config)]


def all_models(config: dict[str, Any], artefacts: Iterable[str] | None = None) -> list[ModelKey]:
    """Every model of the given artefacts (default: every artefact this configuration builds)."""
    names = built_artefacts(config) if artefacts is None else list(artefacts)
    return sorted_keys({key for name in names for key in registry.get(name).models(config)})


def job_resources(config: dict[str, Any], dataset: str) -> dict[str, dict[str, int]]:
    """What a dataset's train_model and evaluate_model jobs ask for: its config job_resources over their `default`."""
    table = config["job_resources"]
    own = table.get(dataset, {})
    return {rule: {**values, **own.get(rule, {})} for rule, values in table["default"].items()}


def training_words(key: ModelKey, config: dict[str, Any]) -> list[str]:
    """The `advprune train` arguments of a model (besides --out): its key's words (ModelKey.argv), the config's
    device and data root, and the dataset's overrides. A params value of its rule, so these words must not change for
    a finished model."""
    words = key.argv()
    # Between the key's identity and its pruning words, where every command written so far has them.
    at = words.index("--prune-epoch") if key.prunes else len(words)
    words[at:at] = ["--device", config["device"], "--data-root", config["data_root"]]
    for override in config["training_overrides"].get(key.dataset, []):
        words += ["--set", override]
    return words


def forks_by_prefix(keys: Iterable[ModelKey]) -> dict[PrefixKey, list[ModelKey]]:
    """The prefixes (advprune.prefix) the workflow trains for these models, each with the models that fork from it:
    those that two or more of them would fork from. A prefix of one model saves nothing (its e epochs are trained
    once either way) and costs a job, so that model trains from scratch. The workflow passes every model of the
    configured plan (all_models), so the target asked for never changes whether a model forks."""
    forks: dict[PrefixKey, list[ModelKey]] = {}
    for key in dict.fromkeys(keys):
        if (prefix := PrefixKey.of(key)) is not None:
            forks.setdefault(prefix, []).append(key)
    shared = sorted((p for p, models in forks.items() if len(models) >= 2),
                    key=lambda p: (p.dataset, p.precision, p.schedule, p.epoch, p.seed))  # fmt: skip
    return {prefix: forks[prefix] for prefix in shared}


def prefixes_of(keys: Iterable[ModelKey]) -> list[PrefixKey]:
    """The prefixes of forks_by_prefix, in order."""
    return list(forks_by_prefix(keys))


def prefix_words(key: PrefixKey, config: dict[str, Any]) -> list[str]:
    """The `advprune prefix` arguments of a prefix (besides --out): its key's words (PrefixKey.argv), the config's
    device and data root, and the dataset's overrides: the settings its forks train with."""
    words = key.argv() + ["--device", config["device"], "--data-root", config["data_root"]]
    for override in config["training_overrides"].get(key.dataset, []):
        words += ["--set", override]
    return words


def _check_artefact_names(config: dict[str, Any]) -> None:
    """Every artefacts.<name> of the config must be the registry's (the schema lets a new grid in by any name)."""
    for name in config["artefacts"]:
        if name not in registry.BY_NAME:
            raise ValueError(
                f"artefacts.{name}: no artefact of that name in advprune.artefacts; "
                f"known: {', '.join(registry.names())}"
            )
    missing = [name for name in registry.names(ModelGrid, DataArtefact) if name not in config["artefacts"]]
    if missing:
        raise ValueError(f"artefacts: no grid for {', '.join(missing)} (config.yaml, or the entry's default_config)")


# The workflow's config schema, in the checkout the package is installed from (scripts/setup.sh installs it editable).
CONFIG_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


def load_config(configfiles: Iterable[Path], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A workflow configuration as `snakemake --configfile A B --config K=V` layers it (later files and then the
    overrides win), prepared as the workflow prepares it (prepare_config): what every command that reads a workflow
    config uses."""
    import yaml

    config: dict[str, Any] = {}
    for path in configfiles:
        deep_update(config, yaml.safe_load(Path(path).read_text()) or {})
    deep_update(config, dict(overrides or {}))
    prepare_config(config)
    return config


def prepare_config(config: dict[str, Any], schema: Path = CONFIG_SCHEMA) -> list[Path]:
    """The one way a configuration becomes the workflow's, in place, for the Snakefile (rules/config.smk) and every
    command: each registry entry's default grid where the config has none (a new figure needs no config edit), the
    schema (which fills its defaults), the plugins (they add the strategies and datasets a config may name), then
    the checks across keys (check_config). Returns the plugins' paths; ValueError names the problem."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from advprune import plugins

    config["artefacts"] = registry.with_default_configs(config.get("artefacts", {}))
    if not Path(schema).is_file():
        raise ValueError(f"no config schema at {schema}: advprune reads workflow configs from the checkout it is "
                         "installed from (scripts/setup.sh)")
    try:
        validate(config, str(schema))
    except WorkflowError as error:
        raise ValueError(str(error)) from None
    try:
        loaded = plugins.load(config["plugins"])
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"plugins: {error}") from None
    check_config(config)
    return loaded


# Below it a keep's `:g` form, which names the model's directory, is in exponent notation (1e-05), which the
# workflow's {run} wildcard does not match: the DAG broke.
MIN_KEEP = 1e-4


def _check_paths(config: dict[str, Any]) -> None:
    """data_root is part of every dataset path of the DAG: empty, or with a Snakemake wildcard, it broke the DAG."""
    root = config["data_root"]
    if not root.strip() or any(char in root for char in "{}\n"):
        raise ValueError(f"data_root: {root!r} must be a non-empty folder name without {{, }} or line breaks "
                         "(braces are Snakemake wildcards)")


def _check_keeps(config: dict[str, Any]) -> None:
    for name, spec in config["artefacts"].items():
        if not registry.get(name).keeps_name_models:  # a simulation's keeps name no directory (advprune.kinds)
            continue
        places = [(f"artefacts.{name}.keep", spec.get("keep"))]
        if "pruned_model" in spec:
            places.append((f"artefacts.{name}.pruned_model.keep", spec["pruned_model"].get("keep")))
        for where, value in places:
            values = [v for item in (value.values() if isinstance(value, dict) else [value]) for v in as_list(item)]
            for keep in values:
                if isinstance(keep, (int, float)) and 0 < keep < MIN_KEEP:
                    raise ValueError(f"{where}: keep {keep:g} is below {MIN_KEEP:g}, the smallest fraction a model's "
                                     "directory name can hold")


def _check_overrides(config: dict[str, Any]) -> None:
    """A misspelt dataset name under training_overrides or job_resources was ignored without a word: the run used the
    defaults."""
    known = known_datasets()
    named = {
        "training_overrides": list(config["training_overrides"]),
        "job_resources": [name for name in config.get("job_resources", {}) if name != "default"],
    }
    for key, datasets in named.items():
        for dataset in datasets:
            if dataset not in known:
                raise ValueError(f"{key}.{dataset}: no dataset of that name; known: {', '.join(known)}")


MAX_SEEDS = 1000  # per artefact: the paper uses 30; 10^8 ran out of memory listing them, then their models
SEED_RANGE = 2**32  # what every random generator a seed reaches accepts (train's --seed)


def _check_seed_counts(config: dict[str, Any]) -> None:
    """Before any list of seeds is made: `seeds: 1e8` is a list of 10^8, then of as many models per cell."""
    for name, spec in config["artefacts"].items():
        seeds = spec.get("seeds")
        count = seeds if isinstance(seeds, int) else len(seeds) if isinstance(seeds, list) else 0
        if count > MAX_SEEDS:
            raise ValueError(f"artefacts.{name}.seeds: {count} seeds, more than the limit of {MAX_SEEDS} per artefact")
        if isinstance(seeds, list) and any(isinstance(s, int) and not 0 <= s < SEED_RANGE for s in seeds):
            raise ValueError(f"artefacts.{name}.seeds: a seed outside [0, {SEED_RANGE - 1}]")
        model = spec.get("pruned_model") or {}
        if isinstance(model.get("seed"), int) and not 0 <= model["seed"] < SEED_RANGE:
            raise ValueError(f"artefacts.{name}.pruned_model.seed: {model['seed']} is outside [0, {SEED_RANGE - 1}]")


def check_config(config: dict[str, Any]) -> None:
    """What the JSON schema cannot say: references between keys, and prune epochs within each dataset's training.

    Raises ValueError naming the offending key.
    """
    _check_artefact_names(config)
    problem = number_problem(config)  # NaN passes every bound of the schema: `keep: [.nan]` planned unmakeable paths
    if problem is not None:
        raise ValueError(problem)
    _check_seed_counts(config)
    _check_paths(config)
    _check_keeps(config)
    epochs_of = {}  # each dataset's epoch count, resolved (and so validated) once
    for role, dataset in config["datasets"].items():
        try:
            epochs_of[dataset] = resolve(dataset, overrides=config["training_overrides"].get(dataset, []))["epochs"]
        except ValueError as error:
            raise ValueError(f"datasets.{role} / training_overrides.{dataset}: {error}") from None
        if role in active_roles(config):
            check_n_examples(dataset, config["n_examples"])
    _check_overrides(config)  # after the roles' datasets: a dataset no plugin registered is named as the role's
    for dataset, overrides in config["training_overrides"].items():  # of datasets no role plays too
        if dataset not in config["datasets"].values():
            try:
                resolve(dataset, overrides=overrides)
            except ValueError as error:
                raise ValueError(f"training_overrides.{dataset}: {error}") from None
    for name, spec in config["artefacts"].items():
        for role in spec.get("roles", []) + ([spec["pruned_model"]["role"]] if "pruned_model" in spec else []):
            if role not in config["datasets"]:
                raise ValueError(
                    f"artefacts.{name}: role {role!r} is not in datasets ({', '.join(config['datasets'])})"
                )
        for strategy in spec.get("strategies", []):
            if strategy not in STRATEGIES:
                raise ValueError(
                    f"artefacts.{name}.strategies: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}"
                )
        if "prune_epoch" in spec:
            epochs = spec["prune_epoch"]
            if isinstance(epochs, dict):
                missing = [role for role in spec["roles"] if role not in epochs]
                if missing:
                    raise ValueError(
                        f"artefacts.{name}.prune_epoch: no prune epochs for role(s) {', '.join(missing)} "
                        f"(the artefact's roles: {', '.join(spec['roles'])})"
                    )
                # A known role the artefact does not cover is allowed (dropping a role from `roles` needs no other
                # edit); a name that is no role at all is a typo.
                unknown = [str(role) for role in epochs if role not in config["datasets"]]
                if unknown:
                    raise ValueError(
                        f"artefacts.{name}.prune_epoch: unknown role(s) {', '.join(unknown)}; "
                        f"known: {', '.join(config['datasets'])}"
                    )
            for role in spec["roles"]:
                _check_epochs(config, epochs_of, f"artefacts.{name}.prune_epoch", role, per_role(epochs, role))
        if "pruned_model" in spec:
            model = spec["pruned_model"]
            if model["strategy"] not in STRATEGIES:
                raise ValueError(
                    f"artefacts.{name}.pruned_model.strategy: unknown strategy {model['strategy']!r}; "
                    f"known: {', '.join(STRATEGIES)}"
                )
            _check_epochs(
                config, epochs_of, f"artefacts.{name}.pruned_model.prune_epoch", model["role"], model["prune_epoch"]
            )
        value = spec.get("seeds", 1)
        if isinstance(value, bool) or not isinstance(value, (int, list)):
            raise ValueError(f"artefacts.{name}.seeds: {value!r} is neither a count nor a list of seeds")
        seeds = seeds_of(value)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"artefacts.{name}.seeds: duplicate seeds in {seeds}")
    for artefact in registry.ARTEFACTS:  # what only its kind knows (advprune.kinds: check_config)
        if artefact.name in config["artefacts"]:
            artefact.check_config(config)


def _check_epochs(config: dict[str, Any], epochs_of: dict[str, int], where: str, role: str, epochs: Any) -> None:
    dataset = config["datasets"][role]
    total = epochs_of[dataset]
    for epoch in as_list(epochs):
        if not 0 <= epoch < total:
            raise ValueError(
                f"{where}: prune epoch {epoch} for {role} ({dataset}) must be in [0, {total - 1}]: "
                f"{dataset} trains for {total} epochs"
            )
