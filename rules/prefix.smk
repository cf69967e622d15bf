# A seed's first e full-data epochs, trained once (advprune.prefix): the pruned models of the plan with that pruning
# epoch, seed and schedule, two or more, fork from the prefix (rules/train.smk takes it as an input), instead of
# training them again.
import functools
import re

from advprune.prefix import PREFIX_DIRECTORY, PREFIX_FILE, PrefixKey, started_from_prefix

PREFIX_PATTERN = str(Path(PREFIX_DIRECTORY, PREFIX_FILE))


# The prefixes that two or more models of the configured plan fork from, each with its forks
# (plan.forks_by_prefix), computed once at DAG build from every artefact this configuration builds, not from the
# target asked for: adding a target never changes whether a model forks. A model whose prefix would serve it alone
# trains from scratch.
FORKS = plan.forks_by_prefix(PLANNED_MODELS)


def fork_prefix(w):
    """A pruned model's prefix, as an input of its training: [] for e = 0, the full-data model, a model whose prefix
    no other model of the plan shares, and a model trained from scratch (all those trained before prefixes): their
    inputs stay the ones Snakemake recorded, so they are not replanned; a model that began as a fork keeps its
    prefix, even if the plan no longer shares it.

    Not ancient(): a prefix retrained because the method or a setting changed must retrain its forks, and when a
    job reruns Snakemake (9.27) checks neither the params of its consumers nor, where their input is ancient and
    present, their need to rerun: a METHOD_VERSION bump would leave them stale."""
    model = model_key(w)
    key = PrefixKey.of(model)
    if key is None:
        return []
    forked = started_from_prefix(model.directory)
    if forked is None:  # not begun: it forks where the plan shares its prefix and the prefix is still to be had
        forked = key in FORKS and not used_up(key)
    return [key.path] if forked else []


@functools.cache  # once per prefix and DAG build, not once per fork (each reads every fork's files)
def used_up(key):
    """A prefix gone after forks were trained from it (keep_prefixes false, or refused as damaged): a model added
    later trains from scratch (bit for bit the same on the CPU), as rebuilding the prefix would make Snakemake train
    every finished fork of it again."""
    return not Path(key.path).exists() and any(started_from_prefix(model.directory) for model in FORKS[key])


def prefix_arguments(w):
    key = PrefixKey(w.dataset, w.precision, w.schedule, int(w.epoch), int(w.seed))
    return quoted(*plan.prefix_words(key, config))


def datasets_pattern(kept):
    """The {dataset} wildcard of the prefixes config keep_prefixes keeps (kept=True: every dataset it does not name
    false) or lets Snakemake delete once their forks are trained (kept=False)."""
    deleted = [re.escape(name) for name, keep in config["keep_prefixes"].items() if not keep]
    if kept:
        return rf"(?!(?:{'|'.join(deleted)})/)[a-z0-9][a-z0-9-]*" if deleted else r"[a-z0-9][a-z0-9-]*"
    return "|".join(deleted) or r"(?!)"


# Two rules, the same but for temp(): a rule's output flags cannot depend on its wildcards.
for KEPT in (True, False):

    rule:
        name:
            "train_prefix" if KEPT else "train_prefix_temporary"
        wildcard_constraints:
            dataset=datasets_pattern(KEPT),
            schedule="rescale|fixed",
            epoch=r"[1-9]\d*",
        input:
            data=DATA_FILE,
        output:
            prefix=PREFIX_PATTERN if KEPT else temp(PREFIX_PATTERN),
        params:
            arguments=prefix_arguments,
            out=lambda w, output: quoted(Path(output.prefix).parent),
            method_version=METHOD_VERSION,
        log:
            "logs/train_prefix/{dataset}/{precision}/{schedule}_e{epoch}/seed{seed}.log",
        benchmark:
            "benchmarks/train_prefix/{dataset}/{precision}/{schedule}_e{epoch}/seed{seed}.tsv"
        threads: 1
        resources:
            mem_mb=job_resource("train_model", "mem_mb"),
            runtime=job_resource("train_model", "runtime"),
            gpu=1 if config["device"] == "cuda" else 0,
            gpu_slots=GPU_SLOTS,
        conda:
            "../envs/torch.yaml"
        shell:
            "python -m advprune prefix {params.arguments} --out {params.out} --no-progress > {log:q} 2>&1"
