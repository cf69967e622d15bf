# Named targets: `snakemake --cores 4 fig4` builds figures/fig4.pdf, `snakemake claims` the claims table, and so on;
# `all` builds the artefacts this configuration builds (config `roles`; the toy model and the claims always).

ARTEFACT_TARGETS = [path for name in plan.built_artefacts(config) for path in artefacts.get(name).targets]

for artefact in artefacts.ARTEFACTS:

    rule:
        name:
            artefact.name
        localrule: True
        input:
            artefact.targets,
