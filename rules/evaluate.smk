# Clean accuracy on the full test set and standard AutoAttack (L-inf, training eps) on the first n test points.

rule evaluate_model:
    input:
        checkpoint=model_file("model.pt"),
        data=DATA_FILE,
    output:
        model_file(EVALUATION_FILE),
    params:
        arguments=lambda w: quoted(
            "--dataset", w.dataset, "--device", config["device"], "--data-root", config["data_root"]
        ),
        method_version=METHOD_VERSION,
    log:
        "logs/evaluate_model/{dataset}/{precision}/{run}/seed{seed}-n{n}.log",
    benchmark:
        "benchmarks/evaluate_model/{dataset}/{precision}/{run}/seed{seed}-n{n}.tsv"
    threads: 1
    resources:
        mem_mb=job_resource("evaluate_model", "mem_mb"),
        runtime=job_resource("evaluate_model", "runtime"),
        gpu=1 if config["device"] == "cuda" else 0,
        gpu_slots=GPU_SLOTS,
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m advprune evaluate --checkpoint {input.checkpoint:q} --n-examples {wildcards.n} {params.arguments}"
        " --out {output:q} > {log:q} 2>&1"
