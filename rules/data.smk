# Dataset download (official checksums) or offline copy -> one canonical .npz per dataset.


rule prepare_dataset:
    output:
        DATA_FILE,
    params:
        source=lambda w: (
            "--source " + quoted(config["sources"][w.dataset]) if config["sources"].get(w.dataset) else ""
        ),
        root=lambda w, output: quoted(Path(output[0]).parent),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m advprune prepare --dataset {wildcards.dataset:q} --root {params.root} {params.source} > {log:q} 2>&1"


# Under a cluster executor the download runs on the submitting host: compute nodes often have no internet access.
localrules:
    prepare_dataset,
