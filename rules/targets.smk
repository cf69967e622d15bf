# Named targets: `snakemake --cores 4 fig4` builds figures/fig4.pdf, `snakemake claims` the claims table, and so on.

for artefact, files in ARTEFACT_FILES.items():

    rule:
        name:
            artefact
        localrule: True
        input:
            files,
