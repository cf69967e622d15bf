# Every figure and table of the registry (advprune.artefacts), one rule each, whose inputs and command its kind
# gives (advprune.kinds): tidy tables -> the paper's figures (seaborn) and tables (.pdf, .csv, .tex, .md); fig8/table2
# from the datasets and one model's pruning decision; section 5.2's toy model from its config alone; the claims from
# the artefact tables. Each with a report caption.
from advprune.report.captions import caption_facts

for artefact in artefacts.ARTEFACTS:

    rule:
        name:
            artefact.rule
        # Seconds of pandas and matplotlib run in the main process under a cluster executor; an entry with
        # resources (t-SNE) is a job of its own.
        localrule: not artefact.resources
        input:
            **artefact_inputs(artefact),
        output:
            **{
                suffix: report(path, caption=f"../{artefact.caption}", category=artefact.report_category(suffix))
                if suffix in ("pdf", "csv")
                else path
                for suffix, path in artefact.paths.items()
            },
            **artefact.extra_outputs,
            provenance=provenance_file(artefact.name),
        params:
            # Known when the Snakefile is read: a params value Snakemake records, so a config edit that changes an
            # artefact's command reruns it.
            command=quoted(*artefact.command(config)),
            # Not used by the command: the entry itself, so editing it reruns this artefact and no other.
            entry=repr(artefact),
            caption=caption_facts(config, artefact.name),  # printed by the report caption
        log:
            f"logs/draw/{artefact.name}.log",
        benchmark:
            f"benchmarks/draw/{artefact.name}.tsv"
        resources:
            **artefact.resources,
        conda:
            "../envs/report.yaml"
        shell:
            "python -m advprune {params.command} > {log:q} 2>&1"
