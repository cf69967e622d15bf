"""`python -m advprune <command>`: one command line for every step of the workflow."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Sequence

from advprune import settings as settings_module
from advprune.identity import PRECISIONS
from advprune.schedules import SCHEDULES

if TYPE_CHECKING:
    from advprune.kinds import Artefact

# Set (to 1) by the workflow for its jobs (rules/environment.smk): `train`, `prefix` and `evaluate` then wait for a
# busy output and end without work on one they find finished, as a job of a rerun must (README: interruptions).
WORKFLOW_JOB = "ADVPRUNE_WORKFLOW_JOB"
# What an interrupted command leaves to continue from, said when Ctrl-C stops it.
ON_INTERRUPT = {
    "train": "; the same command resumes from the run's last checkpoint (resume.pt, written after every epoch)",
    "prefix": "; the same command resumes from the prefix run's last checkpoint (resume.pt, written after every epoch)",
    "evaluate": "; the same command continues after the last finished attack (<out>.partial.pt)",
}


class _HelpFormatter(argparse.HelpFormatter):
    """--help shows each option's default after its help (not for required options, flags or options without one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.required or default in (None, False, argparse.SUPPRESS) or default == [] or "%(default)" in text:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """argparse with its refusals in the form of every other one: one line, exit code 2 (--help shows the usage)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)  # subcommands' parsers are _Parsers too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [minimum, maximum]; argparse names the option in its one-line refusal."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    return parse


_SEED = _integer(0, 2**32 - 1)  # what every random generator the seed reaches accepts


def _add_device_options(p: argparse.ArgumentParser) -> None:
    """Where `train` and `evaluate` run, and the GPU slot they claim there (advprune.gpu_slots)."""
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--jobs-on-device", type=_integer(1), default=1, help="how many jobs share this device (recorded)")
    p.add_argument("--jobs-per-gpu", type=_integer(1, 64),
                   help="with --device cuda: claim one of this many slots per visible GPU (default: "
                   "$ADVPRUNE_JOBS_PER_GPU, which the workflow sets, else 1; docs/gpu.md)")


def _add_prepare(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("prepare", help="download (checksummed) and convert a dataset into its canonical .npz")
    p.add_argument("--dataset", required=True, help="digits-mnist | digits-cifar | mnist | cifar10 (or a plugin's)")
    p.add_argument("--root", type=Path, default=Path("data"), help="data root: <root>/<dataset>.npz is written")
    p.add_argument("--source", type=Path, help="an offline copy: MNIST's raw gz folder or a canonical cifar10.npz")
    p.set_defaults(handler=_prepare)


def _add_settings_options(p: argparse.ArgumentParser, set_help: str) -> None:
    """The options that resolve a training's settings (advprune.settings), shared by `train` and `prefix`: a prefix
    is asked for with the settings of the runs that fork from it."""
    p.add_argument("--schedule-after-pruning", choices=SCHEDULES,
                   help="learning-rate schedule after pruning (default: the dataset's setting, rescale)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="fp32, or bf16 autocast (default: the dataset's setting, fp32)")
    p.add_argument("--config", type=Path, help="YAML file with sections common/<dataset> overriding defaults.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.add_argument("--data-root", type=Path, default=Path("data"), help="where <dataset>.npz lives")


def _add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="RS-FGSM training with one-shot data pruning")
    p.add_argument("--dataset", required=True, help="a prepared dataset: <data-root>/<dataset>.npz")
    p.add_argument("--strategy", default="random",
                   help="random | low | high | low+high | mean-distance (or a plugin's)")
    p.add_argument("--keep", type=float, required=True, help="fraction of the training set kept; 1.0 = no pruning")
    p.add_argument("--prune-epoch", type=int, help="full-data epochs before pruning (needed when keep < 1)")
    p.add_argument("--seed", type=_SEED, required=True,
                   help="the model's seed (its directory's seed<N>): initialisation, batch order, augmentation, "
                   "RS-FGSM starts, scoring, random pruning and the monitor's batch")
    p.add_argument("--out", type=Path, required=True, help="run directory (model.pt, train.json, pruning.npz)")
    _add_settings_options(p, "override one setting, e.g. --set epochs=3 --set monitor.pgd_steps=5 (repeatable)")
    _add_device_options(p)
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar: one timestamped log line per epoch instead (always so when stderr is "
                   "not a terminal)")
    p.add_argument("--overwrite", action="store_true", help="train again over a finished run in --out")
    p.add_argument("--fork-from", default="", metavar="PREFIX",
                   help="a pruned run starts from this prefix.pt of `advprune prefix` (its first --prune-epoch "
                   "epochs) unless it resumes; empty: from scratch (the same model, bit for bit on the CPU)")
    p.set_defaults(handler=_train)


def _add_prefix(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("prefix", help="train a seed's first E full-data epochs once: the prefix.pt that pruned "
                            "runs with --prune-epoch E fork from (advprune.prefix)")
    p.add_argument("--dataset", required=True, help="a prepared dataset: <data-root>/<dataset>.npz")
    p.add_argument("--prune-epoch", type=_integer(1), required=True, help="E: the full-data epochs of the prefix")
    p.add_argument("--seed", type=_SEED, required=True,
                   help="the model seed of the runs that fork from it (their `train --seed`)")
    p.add_argument("--out", type=Path, required=True, help="prefix directory: <out>/prefix.pt is written")
    _add_settings_options(p, "override one setting, as the forks' `train --set` (repeatable; a prefix is trained "
                          "with the settings of the runs that fork from it)")
    _add_device_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar: one log line per epoch instead")
    p.set_defaults(handler=_prefix)


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("evaluate", help="clean accuracy and standard AutoAttack of one checkpoint")
    p.add_argument("--checkpoint", type=Path, required=True, help="a finished run's model.pt")
    p.add_argument("--n-examples", type=_integer(1), default=1000, help="AutoAttack on the first N test points")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON file")
    p.add_argument("--dataset", help="refuse a checkpoint of another dataset")
    p.add_argument("--model", help="refuse a checkpoint of another architecture")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="where <dataset>.npz lives")
    p.add_argument("--batch-size", type=_integer(1), default=1000, help="points per forward pass and attack batch")
    p.add_argument("--seed", type=_SEED, default=0,
                   help="AutoAttack's seed (its attacks' random draws), not the model's (the checkpoint holds that); "
                   "the workflow leaves it 0")
    _add_device_options(p)
    p.add_argument("--overwrite", action="store_true", help="evaluate again over an existing --out")
    p.set_defaults(handler=_evaluate)


def _add_settings(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("settings", help="print the resolved settings of a dataset as JSON")
    p.add_argument("--dataset", required=True, help="a dataset with settings in defaults.yaml (or a plugin's)")
    p.add_argument("--config", type=Path, help="YAML file with sections common/<dataset> overriding defaults.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set epochs=3 (repeatable)")
    p.set_defaults(handler=_settings)


def _add_collect(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("collect", help="per-model JSON files -> one tidy CSV (one row per model)")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories holding train.json")
    p.add_argument("--n-examples", type=_integer(1), required=True, help="which evaluation: autoattack-n<N>.json")
    p.add_argument("--out", type=Path, required=True, help="the tidy CSV")
    p.set_defaults(handler=_collect)


def _add_build(commands: argparse._SubParsersAction) -> None:
    from advprune.artefacts import ARTEFACTS

    p = commands.add_parser("build", help="build one artefact of the registry (a figure, a table, the toy model, the "
                            "claims) and its provenance, as the workflow's rule for it does")
    _add_artefacts(p, ARTEFACTS)


def _add_artefacts(parser: argparse.ArgumentParser, artefacts: Sequence[Artefact]) -> None:
    """NAME, then its kind's options (advprune.kinds: add_arguments)."""
    names = parser.add_subparsers(dest="name", required=True, metavar="NAME",
                                  help="the artefact; `NAME --help` lists its kind's options")
    for artefact in artefacts:
        artefact.add_arguments(names.add_parser(artefact.name, help=artefact.rule.replace("_", " ", 1)))
    parser.set_defaults(handler=_build)


def _add_build_aliases(commands: argparse._SubParsersAction) -> None:
    """The commands of each kind from before `build`, kept as its aliases: records and docs name them."""
    from advprune.artefacts import get, names
    from advprune.kinds import DataArtefact, ModelGrid

    p = commands.add_parser("render", help="`build NAME` of a figure or table drawn from its tidy CSV")
    _add_artefacts(p, [get(name) for name in names(ModelGrid)])
    p = commands.add_parser("embed", help="`build NAME` of fig8 (t-SNE) or table2 (class density and separation)")
    _add_artefacts(p, [get(name) for name in names(DataArtefact)])
    for name, text in (("toy", "the toy model of section 5.2"),
                       ("claims", "the paper's claims against the artefact tables: effect, 95%% CI, verdict")):
        p = commands.add_parser(name, help=f"`build {name}`: {text}")
        get(name).add_arguments(p)
        p.set_defaults(handler=_build, name=name)


def _add_publish(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("publish", help="add a run's finished models to a reproduction record (docs/results/...) "
                            "and redraw its artefacts, claims and facts; published rows never change")
    p.add_argument("run_dir", type=Path, help="the checkout the workflow ran in (its results/ and benchmarks/)")
    p.add_argument("record", type=Path, help="the record's folder, e.g. docs/results/mnist-cpu")
    p.add_argument("--configfile", type=Path, nargs="+", required=True,
                   help="the run's workflow config files, as Snakemake layered them (e.g. config.yaml "
                   "profiles/cpu/cpu.yaml): they give each artefact's grid and the AutoAttack sample size")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override as the run's --config gave it, e.g. seeds_max=30 (YAML value; repeatable)")
    p.add_argument("--artefact", action="append", required=True, metavar="NAME",
                   help="a model-grid artefact to publish, e.g. table1 (repeatable)")
    p.add_argument("--role", action="append", default=[], metavar="ROLE=DATASET",
                   help="the dataset standing in for the paper's, e.g. mnist=mnist (repeatable)")
    p.add_argument("--log", action="append", type=Path, default=[],
                   help="a Snakemake console log of one sitting of the run (repeatable; kept in facts.json)")
    p.set_defaults(handler=_publish)


def _add_missing(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("missing", help="the Snakemake targets (evaluation files) of artefacts' models that a "
                            "record does not hold yet, seed by seed: what the next sitting of a run trains")
    p.add_argument("record", type=Path, help="the record's folder, e.g. docs/results/mnist-cpu")
    p.add_argument("--configfile", type=Path, nargs="+", required=True,
                   help="the run's workflow config files, as Snakemake layers them")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override, as the run's --config gives it (YAML value; repeatable)")
    p.add_argument("--artefact", action="append", required=True, metavar="NAME", help="a model-grid artefact")
    p.add_argument("--only", action="append", default=[], metavar="STRATEGY=KEEP",
                   help="only this cell, e.g. random=0.4 or full=1 (repeatable; default: every cell)")
    p.add_argument("--new-record", action="store_true",
                   help="the record does not exist yet: every model of the grids is missing (without it, a folder "
                   "without models.csv is refused, as a mistyped path would list the published models again)")
    p.set_defaults(handler=_missing)


def _add_cost(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("cost", help="models, evaluations and estimated GPU hours of workflow targets")
    p.add_argument("targets", nargs="*", help="artefact names (fig1 ... table2); default: every artefact and all")
    p.add_argument("--configfile", type=Path, nargs="+", default=[Path("config.yaml")],
                   help="workflow config files, later ones layered on earlier ones; a target name after them "
                   "(`--configfile A B fig4`) is a target, not a file")
    p.add_argument("--timings", type=Path, help="seconds per epoch and per 1000 AutoAttack points, per dataset "
                   "(default: the measured facts of docs/method.md, advprune/timings.yaml), or the JSON of "
                   "`advprune bench`")
    p.add_argument("--jobs-per-gpu", type=_integer(1, 64), default=1,
                   help="with a bench JSON: training at this many jobs per GPU, as measured (default 1)")
    p.set_defaults(handler=_cost)


def _add_bench(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("bench", help="seconds per model-epoch at k jobs per device and AutoAttack seconds, "
                            "against a reference-style job (docs/gpu.md)")
    p.add_argument("--tiny", action="store_true", help="a few hundred points and k = 1, 2: seconds on a CPU (CI)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON file that "
                   "`advprune cost --timings` reads")
    p.add_argument("--shapes", nargs="+", choices=["mnist", "cifar10"], default=["mnist", "cifar10"],
                   help="the datasets whose image shape, model and recipe are measured (on synthetic data)")
    p.add_argument("--jobs", nargs="+", type=_integer(1, 64), metavar="K",
                   help="concurrent training processes to measure (default: 1 2 4 8; --tiny: 1 2)")
    p.add_argument("--autoattack-points", type=_integer(1, 10000), metavar="N",
                   help="AutoAttack on N synthetic test points (default: 1000; --tiny: 4)")
    p.add_argument("--max-seconds", type=_integer(1), metavar="S",
                   help="stop the running jobs after S seconds; the JSON keeps what finished (exit 2)")
    p.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from advprune.bench import command

    command(args.tiny, args.device, args.out, tuple(args.shapes), tuple(args.jobs) if args.jobs else None,
            args.autoattack_points, args.max_seconds)
    print(args.out)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from advprune import datasets

    path = datasets.prepare(args.dataset, args.root, source=args.source)
    print(path)
    return 0


def _train(args: argparse.Namespace) -> int:
    from advprune import datasets, gpu_slots
    from advprune.locks import ExclusiveLock
    from advprune.rundir import refuse_finished
    from advprune.runtime import check_writable_directory, choose_device
    from advprune.identity import ModelKey

    # Every argument and the data are checked before anything is written, and the output before any work.
    resolved = settings_module.resolve(
        args.dataset, args.config, args.overrides,
        schedule_after_pruning=args.schedule_after_pruning, precision=args.precision,
    )
    key = ModelKey.from_args(args, resolved)
    if args.fork_from:
        from advprune.prefix import PrefixKey

        if PrefixKey.of(key) is None:
            raise ValueError("--fork-from: only a pruned run with --prune-epoch >= 1 starts from a prefix")
    device = choose_device(args.device)
    data_file = datasets.canonical_path(args.data_root, args.dataset)
    arrays = datasets.load_canonical(data_file, datasets.get_dataset(args.dataset))
    datasets.check_every_class(arrays, datasets.get_dataset(args.dataset), str(data_file))
    check_writable_directory(args.out, "--out")
    # One `train` per run directory: two would resume from, and write, the same files. The OS drops the lock of a
    # killed process, so a killed run is resumed by the same command.
    in_workflow = _in_workflow()
    lock = _hold_or_wait(ExclusiveLock(args.out / ".train.lock"), "train", args.out, in_workflow)
    try:
        dataset_sha256 = datasets.file_sha256(data_file)
        if in_workflow and _finished_already(args.out, key, resolved, dataset_sha256):
            return 0
        if not args.overwrite:
            refuse_finished(args.out, count_kept_copy=not in_workflow)
        with gpu_slots.claim(device, args.jobs_per_gpu, jobs_on_device=args.jobs_on_device) as placement:
            return _train_locked(args, resolved, key, placement, arrays, dataset_sha256)
    finally:
        lock.release()


def _in_workflow() -> bool:
    return os.environ.get(WORKFLOW_JOB) == "1"


def _hold_or_wait(lock, command: str, out: Path, in_workflow: bool):
    """Take `lock` (locks.ExclusiveLock: never through a symlink) for `advprune <command>` writing `out`. Held by
    another process: by hand, refused in one line; in a workflow job, waited for, as the holder is then a job that a
    killed Snakemake left running, and failing would let Snakemake remove the files it is about to finish (the caller
    then takes what it finished, or continues where it stopped)."""
    if lock.try_acquire():
        return lock
    if not in_workflow:
        raise ValueError(f"another `advprune {command}` is writing {out} (it holds {lock.path}); wait for it to end "
                         "or stop it")
    print(f"waiting for another `advprune {command}` writing {out} (a job of a killed Snakemake?) to end",
          file=sys.stderr)
    lock.acquire(poll_seconds=1.0)
    return lock


def _finished_already(out: Path, key, resolved: dict, dataset_sha256: str) -> bool:
    """In a workflow job: True if `out` holds this very run, finished (its files restored from `.finished/` where
    Snakemake removed them). A rerun then never retrains a finished model, nor fails and lets Snakemake remove it."""
    from advprune.checkpoint import load_checkpoint, recorded_identity, run_identity
    from advprune.rundir import RESULTS, finished_identity, is_finished, keep_results, link_results

    if (out / "resume.pt").exists():  # killed while finishing, or another run in progress: resuming decides
        return False
    wanted = run_identity(key, resolved, dataset_sha256)
    if not is_finished(out) and all((out / name).exists() for name in RESULTS):
        # Finished before `.finished/` existed: kept there now, if it is this run.
        model = load_checkpoint(out / "model.pt")
        if not model["complete"] or recorded_identity(model, list(wanted)) != wanted:
            return False
        keep_results(out)
    if not is_finished(out) or finished_identity(out, list(wanted)) != wanted:
        return False
    restored = ", ".join(link_results(out))
    print(f"{out} holds this run, finished{f' (restored {restored})' if restored else ''}: nothing to train",
          file=sys.stderr)
    return True


def _train_locked(args: argparse.Namespace, resolved: dict, key, placement, arrays, dataset_sha256: str) -> int:
    from advprune.training import Trainer

    trainer = Trainer(
        key, resolved, arrays.x_train, arrays.y_train, out_dir=args.out, device=placement.device,
        dataset_sha256=dataset_sha256, jobs_on_device=placement.jobs_on_device, gpu=placement.gpu,
        show_progress=_progress_bar(args),
    )
    if trainer.try_resume():
        print(f"resuming {args.out} after epoch {trainer.state.epoch}", file=sys.stderr)
    elif args.fork_from:
        trainer.fork_from(Path(args.fork_from))
        print(f"forking {args.out} from {args.fork_from} after epoch {trainer.state.epoch}", file=sys.stderr)
    summary = trainer.fit()
    print(json.dumps({k: summary[k] for k in ("n_kept", "train_seconds", "final_pgd_acc", "collapsed")}))
    return 0


def _prefix(args: argparse.Namespace) -> int:
    from advprune import datasets, gpu_slots
    from advprune.locks import ExclusiveLock
    from advprune.prefix import PrefixKey, build_prefix, prefix_trainer
    from advprune.runtime import check_writable_directory, choose_device

    resolved = settings_module.resolve(
        args.dataset, args.config, args.overrides,
        schedule_after_pruning=args.schedule_after_pruning, precision=args.precision,
    )
    key = PrefixKey.from_args(args, resolved)
    device = choose_device(args.device)
    data_file = datasets.canonical_path(args.data_root, args.dataset)
    arrays = datasets.load_canonical(data_file, datasets.get_dataset(args.dataset))
    check_writable_directory(args.out, "--out")
    # One writer per directory, as `train`; a workflow job waits for an orphan, and then keeps the prefix it finished
    # (build_prefix keeps a valid prefix.pt) or resumes where it stopped.
    in_workflow = _in_workflow()
    lock = _hold_or_wait(ExclusiveLock(args.out / ".train.lock"), "prefix", args.out, in_workflow)
    try:
        with gpu_slots.claim(device, args.jobs_per_gpu, jobs_on_device=args.jobs_on_device) as placement:
            trainer = prefix_trainer(
                key, resolved, arrays.x_train, arrays.y_train, out_dir=args.out, device=placement.device,
                dataset_sha256=datasets.file_sha256(data_file), jobs_on_device=placement.jobs_on_device,
                gpu=placement.gpu, show_progress=_progress_bar(args),
            )
            print(build_prefix(trainer, args.prune_epoch))
    finally:
        lock.release()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from advprune import gpu_slots
    from advprune.evaluation import evaluate_checkpoint
    from advprune.locks import ExclusiveLock
    from advprune.runtime import check_writable_directory, choose_device, write_json

    # AutoAttack's state after each attack, beside the metrics file: a killed evaluation started again with the same
    # command continues from it (Snakemake removes a failed job's declared outputs, not this file).
    _check_metrics_out(args.out, args.checkpoint, args.overwrite)
    state_path = args.out.with_name(args.out.name + ".partial.pt")
    device = choose_device(args.device)
    check_writable_directory(args.out.parent, "--out", args.out)  # before the clean pass and attacks, not after
    # One `evaluate` per metrics file: two would run the same attacks from, and write, the same state.
    in_workflow = _in_workflow()
    lock = _hold_or_wait(ExclusiveLock(args.out.with_name(f".{args.out.name}.lock")), "evaluate", args.out,
                         in_workflow)  # fmt: skip
    try:
        if in_workflow and _measured_already(args):
            print(f"{args.out} holds these metrics, written by the job waited for: nothing to evaluate",
                  file=sys.stderr)
            return 0
        _check_metrics_out(args.out, args.checkpoint, args.overwrite)  # again: written while this one waited?
        with gpu_slots.claim(device, args.jobs_per_gpu, jobs_on_device=args.jobs_on_device) as placement:
            metrics = evaluate_checkpoint(
                args.checkpoint, n_examples=args.n_examples, data_root=args.data_root, device=placement.device,
                batch_size=args.batch_size, seed=args.seed, expected_dataset=args.dataset, expected_model=args.model,
                state_path=state_path, jobs_on_device=placement.jobs_on_device, gpu=placement.gpu,
            )
        write_json(args.out, metrics)
        state_path.unlink(missing_ok=True)  # only now: a kill before the metrics are written reruns no attack
    finally:
        lock.release()
    print(json.dumps({k: metrics[k] for k in ("clean_acc", "autoattack_acc", "eval_seconds")}))
    return 0


def _measured_already(args: argparse.Namespace) -> bool:
    """True if args.out holds the metrics this command would write: of this very checkpoint file (its sha256), on as
    many points, with the same attack seed and batch size."""
    from advprune.datasets import file_sha256
    from advprune.evaluation import SCHEMA
    from advprune.runtime import read_json

    try:
        metrics = read_json(args.out)
    except (ValueError, OSError, UnicodeDecodeError):
        return False
    wanted = {"schema": SCHEMA, "n_examples": args.n_examples, "seed": args.seed, "batch_size": args.batch_size}
    return (isinstance(metrics, dict) and all(metrics.get(k) == v for k, v in wanted.items())
            and args.checkpoint.is_file() and metrics.get("checkpoint_sha256") == file_sha256(args.checkpoint))


def _check_metrics_out(out: Path, checkpoint: Path, overwrite: bool) -> None:
    """--out names a metrics file: never a run's own file (model.pt, train.json, ...), nor the checkpoint under another
    name, and --overwrite replaces only earlier metrics."""
    from advprune.evaluation import SCHEMA
    from advprune.identity import RUN_FILES
    from advprune.runtime import read_json

    if out.is_dir() or not out.name:
        raise ValueError(f"--out {out}: is a directory; --out names the metrics file")
    if out.name in RUN_FILES:
        raise ValueError(f"--out {out}: {out.name} is a run directory's own file, never a metrics file; "
                         "name the metrics file (the workflow's: autoattack-n<N>.json)")
    if not (out.exists() or out.is_symlink()):
        return
    if checkpoint.exists() and out.exists() and out.samefile(checkpoint):
        raise ValueError(f"--out {out}: is the checkpoint being evaluated")
    if not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to evaluate again")
    try:
        earlier = read_json(out) if out.is_file() and not out.is_symlink() else None
    except (ValueError, OSError, UnicodeDecodeError):
        earlier = None
    if not isinstance(earlier, dict) or earlier.get("schema") != SCHEMA:
        raise ValueError(f"--out {out}: exists and is not a metrics file ({SCHEMA}); --overwrite replaces only "
                         "earlier metrics: remove it yourself or name another file")


def _collect(args: argparse.Namespace) -> int:
    from advprune.identity import EVALUATION_FILE
    from advprune.report.aggregate import collect, write_table

    pairs = [(d / "train.json", d / EVALUATION_FILE.format(n=args.n_examples)) for d in args.run_dirs]
    write_table(collect(pairs, args.n_examples), args.out)
    return 0


def _build(args: argparse.Namespace) -> int:
    from advprune.artefacts import get
    from advprune.report.output import save_artefact

    artefact = get(args.name)
    save_artefact(artefact, artefact.build(args), args.out)
    print(args.out)
    return 0


def parse_pairs(texts: list[str], option: str) -> dict[str, str]:
    """Repeated NAME=VALUE options, e.g. `--role mnist=mnist`, as a dict; a ValueError naming the malformed one."""
    pairs = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{option} {text!r} is not of the form NAME=VALUE")
        pairs[key] = value
    return pairs


def _publish(args: argparse.Namespace) -> int:
    import yaml

    from advprune import plan
    from advprune.report.record import publish

    overrides = {key: yaml.safe_load(value) for key, value in parse_pairs(args.set, "--set").items()}
    config = plan.load_config(args.configfile, overrides)
    facts, new = publish(args.run_dir, args.record, config, args.artefact, parse_pairs(args.role, "--role"), args.log)
    per_artefact = ", ".join(f"{name}: {n}" for name, n in facts["models_per_artefact"].items())
    print(f"{args.record}: {facts['models']} models, {new} new ({per_artefact})")
    return 0


def _missing(args: argparse.Namespace) -> int:
    import yaml

    from advprune import plan
    from advprune.report.record import missing_targets

    overrides = {key: yaml.safe_load(value) for key, value in parse_pairs(args.set, "--set").items()}
    config = plan.load_config(args.configfile, overrides)
    only = []
    for text in args.only:
        (strategy, keep), = parse_pairs([text], "--only").items()
        try:
            only.append((strategy, float(keep)))
        except ValueError:
            raise ValueError(f"--only {text!r}: KEEP must be a number, e.g. random=0.4") from None
    for target in missing_targets(args.record, config, args.artefact, only, new_record=args.new_record):
        print(target)
    return 0


def _cost(args: argparse.Namespace) -> int:
    from advprune import artefacts, plan
    from advprune.costs import estimate, load_timings, missing_timings
    from advprune.kinds import Claims, DataArtefact, ModelGrid

    # As with Snakemake's --configfile, targets may follow the files: argparse gives them to --configfile, so a
    # known target name that is not a file is taken back as a target.
    names = {*artefacts.names(), "all"}
    trailing = [path for path in args.configfile if str(path) in names and not path.is_file()]
    configfiles = [path for path in args.configfile if path not in trailing]
    if not configfiles:
        raise ValueError(f"--configfile names no file, only targets ({', '.join(map(str, trailing))})")
    targets = [str(path) for path in trailing] + args.targets
    config = plan.load_config(configfiles)
    timings = load_timings(args.timings, args.jobs_per_gpu)

    def models_of(name: str) -> tuple[list, bool]:
        """(the models a target trains, whether they are evaluated)"""
        if name == "all":
            return plan.all_models(config), True
        if name not in artefacts.BY_NAME:
            raise ValueError(f"unknown target {name!r}; known: {', '.join(artefacts.names())}, all")
        artefact = artefacts.get(name)
        return artefact.models(config), artefact.evaluated

    # The toy model (a Simulation) trains nothing: a CPU simulation of seconds.
    targets = targets or [*artefacts.names(ModelGrid, DataArtefact, Claims), "all"]
    plans = {name: models_of(name) for name in targets}  # every name checked before anything is printed
    jobs = "one job per GPU" if args.jobs_per_gpu == 1 else f"training at {args.jobs_per_gpu} jobs per GPU"
    print(f"Estimated on: {timings['device']}; {jobs}; AutoAttack on {config['n_examples']} points.")
    print("Epochs: full-data epochs trained (a pruned epoch counts its keep), every model from scratch and as the "
          "workflow trains them, pruned models forking from one prefix per seed and pruning epoch.")
    print("| target | models | per dataset | training (GPU h) | AutoAttack (GPU h) | total (GPU h) "
          "| epochs from scratch | epochs with prefixes | epochs saved |")
    print("|---|---|---|---|---|---|---|---|---|")

    def hours(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}"

    for name, (keys, evaluated) in plans.items():
        cost = estimate(keys, timings, config["n_examples"], evaluated=evaluated)
        datasets = ", ".join(f"{d} {n}" for d, n in sorted(cost.per_dataset.items()))
        saved = f"{cost.epochs_saved:.0f} ({cost.epochs_saved / cost.epochs_from_scratch:.0%})" if keys else "0"
        print(f"| {name} | {cost.models} | {datasets} | {hours(cost.training_hours)} | {hours(cost.evaluation_hours)} "
              f"| {hours(cost.total_hours)} | {cost.epochs_from_scratch:.0f} | {cost.epochs:.0f} | {saved} |")
    if missing := missing_timings((key for keys, _ in plans.values() for key in keys), timings):
        print(f"n/a: no timings for {', '.join(missing)} (known: {', '.join(timings['datasets'])}); `advprune bench` "
              "measures them on this machine, and `--timings` reads its JSON.")
    return 0


def _settings(args: argparse.Namespace) -> int:
    print(json.dumps(settings_module.resolve(args.dataset, args.config, args.overrides), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="advprune", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_prepare, _add_train, _add_evaluate, _add_collect, _add_build, _add_build_aliases, _add_publish,
        _add_missing, _add_cost, _add_settings, _add_bench, _add_prefix,
    ):
        add(commands)
    return parser


def _progress_bar(args: argparse.Namespace) -> bool:
    """`train` draws a tqdm bar on a terminal; in a log file or a pipe (Snakemake, Slurm) it logs a line per epoch."""
    return args.command == "train" and not args.no_progress and sys.stderr.isatty()


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from advprune import plugins
    from advprune.runtime import RunFailure, log_to_stderr

    args = build_parser().parse_args(argv)
    try:
        # Timestamped progress lines (an epoch, an attack) unless a progress bar shows it; warnings always.
        with log_to_stderr(logging.WARNING if _progress_bar(args) else logging.INFO):
            plugins.load_from_environment()
            return args.handler(args)
    except KeyboardInterrupt:
        # Ctrl-C: every file is written atomically, so what was saved stays whole; say how to go on, not where Python
        # was (130: the shell's code for an interrupted command).
        print(f"advprune {args.command}: interrupted{ON_INTERRUPT.get(args.command, '')}", file=sys.stderr)
        return 130
    except (ValueError, OSError, RunFailure) as error:
        # Bad input, a file that cannot be read or written, a diverged run, a failed download, a missing GPU: the
        # user's to act on, in one line (a message of several lines is joined), with no traceback.
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        print(f"advprune {args.command}: error: {message or type(error).__name__}", file=sys.stderr)
        return 2
