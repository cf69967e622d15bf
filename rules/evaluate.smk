# Clean accuracy on the full test set and standard AutoAttack (L-inf, training eps) on the first n test points.

EVALUATION_RESOURCES = {
    "mnist": {"mem_mb": 6000, "runtime": 20},
    "cifar10": {"mem_mb": 12000, "runtime": 60},
    "digits-mnist": {"mem_mb": 1500, "runtime": 10},
    "digits-cifar": {"mem_mb": 1500, "runtime": 10},
}


def evaluation_resource(name):
    return lambda w: EVALUATION_RESOURCES.get(w.dataset, DEFAULT_RESOURCES)[name]


rule evaluate_model:
    input:
        checkpoint=MODEL_DIR + "/model.pt",
        data=DATA_FILE,
    output:
        MODEL_DIR + "/autoattack-n{n}.json",
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
        mem_mb=evaluation_resource("mem_mb"),
        runtime=evaluation_resource("runtime"),
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        "../envs/torch.yaml"
    shell:
        "{ADVPRUNE} evaluate --checkpoint {input.checkpoint:q} --n-examples {wildcards.n} {params.arguments}"
        " --out {output:q} > {log:q} 2>&1"
