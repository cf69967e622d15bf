# Per-model JSON files -> tidy tables (pandas): one per artefact (the models it is built from), one for all models.


def table_inputs(keys):
    return {
        "summaries": [f"{key.directory}/train.json" for key in keys],
        "evaluations": [evaluation_file(key) for key in keys],
    }


rule artefact_table:
    input:
        unpack(lambda w: table_inputs(artefact_models(w.artefact))),
        code=report_code("aggregate"),
    output:
        "results/artefacts/{artefact}.csv",
    params:
        directories=lambda w: quoted(*(key.directory for key in artefact_models(w.artefact))),
    log:
        "logs/artefact_table/{artefact}.log",
    conda:
        "../envs/report.yaml"
    shell:
        "{ADVPRUNE} collect --n-examples {config[n_examples]} --out {output:q} {params.directories} > {log:q} 2>&1"


rule models_table:
    input:
        unpack(lambda w: table_inputs(finished(plan.all_models(config)))),
        code=report_code("aggregate"),
    output:
        "results/models.csv",
    params:
        directories=lambda w: quoted(*(key.directory for key in finished(plan.all_models(config)))),
    log:
        "logs/models_table.log",
    conda:
        "../envs/report.yaml"
    shell:
        "{ADVPRUNE} collect --n-examples {config[n_examples]} --out {output:q} {params.directories} > {log:q} 2>&1"
