# One RS-FGSM training run with one-shot pruning per model path (the path names every setting of its weights).

rule train_model:
    input:
        data=DATA_FILE,
        prefix=fork_prefix,  # rules/prefix.smk
    output:
        checkpoint=model_file("model.pt"),
        summary=model_file("train.json"),
        pruning=model_file("pruning.npz"),
    params:
        arguments=training_arguments,
        out=lambda w, output: quoted(Path(output.checkpoint).parent),
        # Not used by the command: it makes Snakemake retrain when the method changes. Code edits alone never do
        # (profiles/default drops the code trigger), so finished models are protected; see the README.
        method_version=METHOD_VERSION,
    log:
        "logs/train_model/{dataset}/{precision}/{run}/seed{seed}.log",
    benchmark:
        "benchmarks/train_model/{dataset}/{precision}/{run}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=job_resource("train_model", "mem_mb"),
        runtime=job_resource("train_model", "runtime"),
        gpu=1 if config["device"] == "cuda" else 0,
        gpu_slots=GPU_SLOTS,
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m advprune train {params.arguments} --fork-from={input.prefix:q} --out {params.out} --no-progress > {log:q} 2>&1"
