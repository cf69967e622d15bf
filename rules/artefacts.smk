# Every figure and table of the registry (advprune.artefacts), one rule each: tidy tables -> the paper's figures
# (seaborn) and tables (.pdf, .csv, .tex, .md); fig8/table2 from the datasets and one model's pruning decision;
# section 5.2's toy model from its config alone; the claims from the artefact tables. Each with a report caption.

for artefact in artefacts.ARTEFACTS:

    rule:
        name:
            artefact.rule
        # Seconds of pandas and matplotlib run in the main process under a cluster executor; an entry with
        # resources (t-SNE) is a job of its own.
        localrule: not artefact.resources
        input:
            unpack(artefact_inputs(artefact)),
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
            command=artefact_command(artefact),
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
