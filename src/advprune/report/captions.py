"""What an artefact's report caption states about the run, read from the config, so a caption cannot contradict it.

`caption_facts` is handed to each rule as `params.caption`; the caption templates (captions/*.rst, Jinja) print its
values. Facts only the data knows (n per point, collapsed runs, devices) are on the artefact itself.
"""

from __future__ import annotations

from typing import Any

from advprune import plan
from advprune.artefacts import BY_NAME, CLAIMS, DATA, MODEL_GRID
from advprune.report.labels import STRATEGY_LABELS, display_name, pruned_fraction


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _numbers(values: list[Any]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _seeds(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 1:
        return f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]})"
    return f"{len(seeds)} seed{'s' * (len(seeds) > 1)} ({', '.join(map(str, seeds))})"


def _per_role(config: dict[str, Any], roles: list[str], value: Any) -> str:
    """'3', '1, 3' or, for a per-role mapping, 'MNIST: 1, 2; CIFAR-10: 1, 3'."""
    if isinstance(value, dict):
        return "; ".join(f"{display_name(config['datasets'][r])}: {_per_role(config, roles, value[r])}" for r in roles)
    return _numbers(value if isinstance(value, list) else [value])


def caption_facts(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The grid of artefact `name` in words: datasets, strategies, keeps, pruning epochs, seeds, AutoAttack points,
    precision and schedule; for fig8/table2 the subsample and the pruned model; the run's size for the claims."""
    if name in config["artefacts"]:
        roles = plan.artefact_roles(config, name)
    else:  # the claims: every role this run builds
        roles = config.get("roles") or list(config["datasets"])
    facts: dict[str, Any] = {
        "datasets": _join([display_name(config["datasets"][r]) for r in roles]) if roles else "none",
        "n_examples": config["n_examples"],
        "precision": config["precision"],
        "schedule": config["schedule_after_pruning"],
        "device": config["device"],
    }
    spec = config["artefacts"].get(name, {})
    kind = BY_NAME[name].kind if name in BY_NAME else None  # the report's front page is no artefact
    if kind == MODEL_GRID:
        facts |= {
            "strategies": _join([STRATEGY_LABELS.get(s, s) for s in spec["strategies"]]),
            "keep": _per_role(config, roles, spec["keep"]),
            "prune_epoch": _per_role(config, roles, spec["prune_epoch"]),
            "seeds": _seeds(plan.artefact_seeds(config, spec)),
            "models": len(plan.artefact_models(config, name)),
        }
    elif kind == DATA:
        model = spec["pruned_model"]
        facts |= {
            "n_points": spec.get("n_points", 5000),
            "seed": spec["seed"],
            "pruned": (
                f"{display_name(config['datasets'][model['role']])} as kept by {STRATEGY_LABELS[model['strategy']]} "
                f"pruning at keep {model['keep']:g} (p = {pruned_fraction(model['keep'])}), pruned after "
                f"{model['prune_epoch']} epochs, seed {model['seed']}"
            ),
        }
    elif kind == CLAIMS:
        models = plan.all_models(config)
        facts |= {"models": len(models), "seeds_max": config.get("seeds_max")}
    return facts
