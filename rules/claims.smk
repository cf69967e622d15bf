# The artefact tables -> the claims table: each claim of the paper, our effect with a bootstrap 95% CI, a verdict.

# The claims' artefacts this configuration builds; claims on the others are reported as not measured.
CLAIM_ARTEFACTS = sorted({claim.artefact for claim in load_claims()} & set(plan.built_artefacts(config)))


rule tabulate_claims:
    input:
        tables=[f"results/artefacts/{name}.csv" for name in CLAIM_ARTEFACTS],
        code=report_code("claims", "selection", "stats", "aggregate", "commands"),
        rules=workflow_file("src/advprune/claims.yaml"),
    output:
        csv=report("figures/claims.csv", caption="../report/claims.rst", category="Claims"),
        md="figures/claims.md",
        provenance=provenance_file("claims"),
    params:
        caption=caption_facts(config, "claims"),
        tables=quoted(*(f"--table={name}=results/artefacts/{name}.csv" for name in CLAIM_ARTEFACTS)),
        options=lambda w: quoted(
            *(f"--role={role}={config['datasets'][role]}" for role in config["roles"]),
            "--schedule", config["schedule_after_pruning"], "--precision", config["precision"],
        ),
    log:
        "logs/draw/claims.log",
    conda:
        "../envs/report.yaml"
    shell:
        "python -m advprune claims {params.tables} {params.options} --out {output.csv:q} > {log:q} 2>&1"


# Seconds of pandas: under a cluster executor it runs in the main process.
localrules:
    tabulate_claims,
