# Tidy tables -> the paper's figures (seaborn) and tables (.pdf, .csv, .tex, .md), each with a report caption;
# section 5.2's toy model is simulated from its config alone.

for figure in ("fig1", "fig2", "fig3", "fig4", "fig5", "fig7"):

    rule:
        name:
            f"draw_{figure}"
        input:
            table=f"results/artefacts/{figure}.csv",
            code=FIGURE_CODE,
        output:
            pdf=report(f"figures/{figure}.pdf", caption=f"../report/{figure}.rst", category="Figures"),
            png=f"figures/{figure}.png",
            provenance=provenance_file(figure),
        params:
            name=figure,
            caption=caption_facts(config, figure),  # printed by the report caption
            options=single_prune_epoch(figure) + " "
            + quoted("--schedule", config["schedule_after_pruning"], "--precision", config["precision"]),
        log:
            f"logs/draw/{figure}.log",
        conda:
            "../envs/report.yaml"
        shell:
            "python -m advprune render {params.name} --table {input.table:q} --out {output.pdf:q} {params.options}"
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
            png=f"figures/{table}.png",
            csv=report(f"figures/{table}.csv", caption=f"../report/{table}.rst", category="Tables"),
            tex=f"figures/{table}.tex",
            md=f"figures/{table}.md",
            provenance=provenance_file(table),
        params:
            name=table,
            caption=caption_facts(config, table),
            options=single_prune_epoch(table) + " "
            + quoted("--schedule", config["schedule_after_pruning"], "--precision", config["precision"]),
        log:
            f"logs/draw/{table}.log",
        conda:
            "../envs/report.yaml"
        shell:
            "python -m advprune render {params.name} --table {input.table:q} --out {output.pdf:q} {params.options}"
            " > {log:q} 2>&1"


rule draw_fig8:
    input:
        unpack(lambda w: embedding_inputs("fig8")),
        code=EMBEDDING_CODE,
    output:
        pdf=report("figures/fig8.pdf", caption="../report/fig8.rst", category="Figures"),
        png="figures/fig8.png",
        provenance=provenance_file("fig8"),
    params:
        variants=lambda w: embedding_variants("fig8"),
        caption=caption_facts(config, "fig8"),
        options=quoted(
            "--n-points", config["artefacts"]["fig8"]["n_points"], "--seed", config["artefacts"]["fig8"]["seed"]
        ),
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
        "python -m advprune embed fig8 {params.variants} {params.options} --out {output.pdf:q} > {log:q} 2>&1"


rule tabulate_table2:
    input:
        unpack(lambda w: embedding_inputs("table2")),
        code=EMBEDDING_CODE,
    output:
        pdf=report("figures/table2.pdf", caption="../report/table2.rst", category="Tables"),
        png="figures/table2.png",
        csv=report("figures/table2.csv", caption="../report/table2.rst", category="Tables"),
        tex="figures/table2.tex",
        md="figures/table2.md",
        provenance=provenance_file("table2"),
    params:
        variants=lambda w: embedding_variants("table2"),
        caption=caption_facts(config, "table2"),
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
        "python -m advprune embed table2 {params.variants} --out {output.pdf:q} > {log:q} 2>&1"


rule simulate_toy:
    input:
        code=TOY_CODE,
    output:
        pdf=report("figures/toy.pdf", caption="../report/toy.rst", category="Figures"),
        png="figures/toy.png",
        csv=report("figures/toy.csv", caption="../report/toy.rst", category="Tables"),
        tex="figures/toy.tex",
        md="figures/toy.md",
        provenance=provenance_file("toy"),
        runs="results/artefacts/toy.csv",
    params:
        options=toy_options(),
    log:
        "logs/draw/toy.log",
    benchmark:
        "benchmarks/draw/toy.tsv"
    conda:
        "../envs/report.yaml"
    shell:
        "python -m advprune toy {params.options} --out {output.pdf:q} --runs {output.runs:q} > {log:q} 2>&1"


# Under a cluster executor the figures and tables from tidy tables, and the toy simulation, run locally (seconds
# each); the two t-SNE
# artefacts above (fig8, table2) stay jobs of their own, with their own resources.
localrules:
    draw_fig1,
    draw_fig2,
    draw_fig3,
    draw_fig4,
    draw_fig5,
    draw_fig7,
    tabulate_table1,
    tabulate_ablation_schedule,
    simulate_toy,
