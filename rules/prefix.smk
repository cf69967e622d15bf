# A seed's first e full-data epochs, trained once (advprune.prefix): every pruned model with that pruning epoch,
# seed and schedule forks from the prefix (rules/train.smk takes it as an input), instead of training them again.
import re

from advprune.prefix import PREFIX_DIRECTORY, PREFIX_FILE, PrefixKey, started_from_prefix

PREFIX_PATTERN = str(Path(PREFIX_DIRECTORY, PREFIX_FILE))


def fork_prefix(w):
    """A pruned model's prefix, as an input of its training: [] for e = 0, the full-data model, and a model trained
    from scratch (all those trained before prefixes): their inputs stay the ones Snakemake recorded, so they are not
    replanned. ancient: a prefix rebuilt later (for a new cell) is not newer work for the forks already trained."""
    key = PrefixKey.of(ModelKey.from_run_name(w.dataset, w.precision, w.run, w.seed))
    if key is None or not started_from_prefix(key_directory(w)):
        return []
    return [ancient(key.path)]


def key_directory(w):
    return MODEL_DIRECTORY.format(dataset=w.dataset, precision=w.precision, run=w.run, seed=w.seed)


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
