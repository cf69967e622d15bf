# Per-model JSON files -> tidy tables (pandas): one per artefact (the models it is built from), one for all models.


rule artefact_table:
    input:
        unpack(lambda w: table_inputs(artefact_models(w.artefact))),
        code=code_files("advprune.report.aggregate"),
    output:
        ARTEFACT_TABLE,
    params:
        directories=lambda w: quoted(*(key.directory for key in artefact_models(w.artefact))),
        n_examples=config["n_examples"],
    log:
        "logs/artefact_table/{artefact}.log",
    conda:
        "../envs/report.yaml"
    shell:
        "python -m advprune collect --n-examples {params.n_examples} --out {output:q} {params.directories} > {log:q} 2>&1"


rule models_table:
    input:
        unpack(lambda w: table_inputs(finished(PLANNED_MODELS))),
        code=code_files("advprune.report.aggregate"),
    output:
        "results/models.csv",
    params:
        directories=lambda w: quoted(*(key.directory for key in finished(PLANNED_MODELS))),
        n_examples=config["n_examples"],
    log:
        "logs/models_table.log",
    conda:
        "../envs/report.yaml"
    shell:
        "python -m advprune collect --n-examples {params.n_examples} --out {output:q} {params.directories} > {log:q} 2>&1"


# Under a cluster executor these run in the main Snakemake process: seconds of pandas are not worth a queue wait.
localrules:
    artefact_table,
    models_table,
