# Tidy tables -> the paper's figures (seaborn) and tables (.pdf, .csv, .tex, .md), each with a report caption.

FIGURE_CODE = report_code("figures", "stats", "labels", "selection", "commands")
TABLE_CODE = report_code("tables", "paper", "stats", "labels", "selection", "commands")
EMBEDDING_CODE = report_code("embedding", "tables", "paper", "labels", "commands")


def single_prune_epoch(name):
    """The --prune-epoch option of artefacts drawn at one pruning epoch (fig1 varies it)."""
    epoch = config["artefacts"][name]["prune_epoch"]
    return f"--prune-epoch {epoch}" if isinstance(epoch, int) else ""


for figure in ("fig1", "fig2", "fig3", "fig4", "fig5", "fig7"):

    rule:
        name:
            f"draw_{figure}"
        input:
            table=f"results/artefacts/{figure}.csv",
            code=FIGURE_CODE,
        output:
            report(f"figures/{figure}.pdf", caption=f"../report/{figure}.rst", category="Figures"),
        params:
            options=f"{single_prune_epoch(figure)} --schedule {config['schedule_after_pruning']}"
            f" --precision {config['precision']}",
        log:
            f"logs/draw/{figure}.log",
        conda:
            "../envs/report.yaml"
        shell:
            "{ADVPRUNE} render " + figure + " --table {input.table:q} --out {output:q} {params.options}"
            " > {log:q} 2>&1"


for table in ("table1", "ablation_schedule"):

    rule:
        name:
            f"tabulate_{table}"
        input:
            table=f"results/artefacts/{table}.csv",
            code=TABLE_CODE,
        output:
            pdf=report(f"figures/{table}.pdf", caption=f"../report/{table}.rst", category="Tables"),
            csv=report(f"figures/{table}.csv", caption=f"../report/{table}.rst", category="Tables"),
            tex=f"figures/{table}.tex",
            md=f"figures/{table}.md",
        params:
            options=f"{single_prune_epoch(table)} --schedule {config['schedule_after_pruning']}"
            f" --precision {config['precision']}",
        log:
            f"logs/draw/{table}.log",
        conda:
            "../envs/report.yaml"
        shell:
            "{ADVPRUNE} render " + table + " --table {input.table:q} --out {output.pdf:q} {params.options}"
            " > {log:q} 2>&1"


def embedding_inputs(name):
    """fig8 / table2 read the canonical data of each role and the pruning decision of one model."""
    spec = config["artefacts"][name]
    pruned = plan.pruned_model(config, name)
    return {
        "data": [f"{config['data_root']}/{config['datasets'][role]}.npz" for role in spec["roles"]],
        "pruning": f"{pruned.directory}/pruning.npz",
    }


def embedding_variants(name):
    """One `--variant NAME=DATA[:PRUNING]` per panel/row: each role's dataset, plus the pruned model's kept set
    right after the dataset it was trained on."""
    spec = config["artefacts"][name]
    pruned = plan.pruned_model(config, name)
    words = []
    for role in spec["roles"]:
        dataset = config["datasets"][role]
        data = f"{config['data_root']}/{dataset}.npz"
        words += ["--variant", f"{dataset}={data}"]
        if dataset == pruned.dataset:
            words += ["--variant", f"{dataset} pruned={data}:{pruned.directory}/pruning.npz"]
    return quoted(*words)


rule draw_fig8:
    input:
        unpack(lambda w: embedding_inputs("fig8")),
        code=EMBEDDING_CODE,
    output:
        report("figures/fig8.pdf", caption="../report/fig8.rst", category="Figures"),
    params:
        variants=lambda w: embedding_variants("fig8"),
        options=f"--n-points {config['artefacts']['fig8']['n_points']} --seed {config['artefacts']['fig8']['seed']}",
    log:
        "logs/draw/fig8.log",
    benchmark:
        "benchmarks/draw/fig8.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/report.yaml"
    shell:
        "{ADVPRUNE} embed fig8 {params.variants} {params.options} --out {output:q} > {log:q} 2>&1"


rule tabulate_table2:
    input:
        unpack(lambda w: embedding_inputs("table2")),
        code=EMBEDDING_CODE,
    output:
        pdf=report("figures/table2.pdf", caption="../report/table2.rst", category="Tables"),
        csv=report("figures/table2.csv", caption="../report/table2.rst", category="Tables"),
        tex="figures/table2.tex",
        md="figures/table2.md",
    params:
        variants=lambda w: embedding_variants("table2"),
    log:
        "logs/draw/table2.log",
    benchmark:
        "benchmarks/draw/table2.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../envs/report.yaml"
    shell:
        "{ADVPRUNE} embed table2 {params.variants} --out {output.pdf:q} > {log:q} 2>&1"
