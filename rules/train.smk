# One RS-FGSM training run with one-shot pruning per model path (the path names every setting of its weights).

# Per-dataset scheduling estimates (from SPEC's H100 measurements, with headroom); a profile may override them
# with set-resources. Datasets not listed get the default.
TRAINING_RESOURCES = {
    "mnist": {"mem_mb": 6000, "runtime": 20},
    "cifar10": {"mem_mb": 12000, "runtime": 60},
    "digits-mnist": {"mem_mb": 1500, "runtime": 5},
    "digits-cifar": {"mem_mb": 1500, "runtime": 5},
}
DEFAULT_RESOURCES = {"mem_mb": 8000, "runtime": 60}


def training_resource(name):
    return lambda w: TRAINING_RESOURCES.get(w.dataset, DEFAULT_RESOURCES)[name]


def training_arguments(w):
    run = plan.parse_run(w.run)
    words = [
        "--dataset", w.dataset, "--strategy", run["strategy"], "--keep", run["keep"], "--seed", w.seed,
        "--precision", w.precision, "--device", config["device"], "--data-root", config["data_root"],
    ]
    if run["prune_epoch"] is not None:
        words += ["--prune-epoch", run["prune_epoch"], "--schedule-after-pruning", run["schedule"]]
    for override in config["training_overrides"].get(w.dataset, []):
        words += ["--set", override]
    return quoted(*words)


rule train_model:
    input:
        data=DATA_FILE,
    output:
        checkpoint=MODEL_DIR + "/model.pt",
        summary=MODEL_DIR + "/train.json",
        pruning=MODEL_DIR + "/pruning.npz",
    params:
        arguments=training_arguments,
        out=lambda w, output: quoted(Path(output.checkpoint).parent),
        # Not used by the command: they make Snakemake retrain when the method or the settings change.
        method_version=METHOD_VERSION,
        settings=lambda w: training_settings(w.dataset),
    log:
        "logs/train_model/{dataset}/{precision}/{run}/seed{seed}.log",
    benchmark:
        "benchmarks/train_model/{dataset}/{precision}/{run}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=training_resource("mem_mb"),
        runtime=training_resource("runtime"),
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        "../envs/torch.yaml"
    shell:
        "{ADVPRUNE} train {params.arguments} --out {params.out} --no-progress > {log:q} 2>&1"
