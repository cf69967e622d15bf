# Data pruning for RS-FGSM adversarial training, reproduced artefact by artefact.
# Run `snakemake --profile profiles/demo` (offline, CPU) or `snakemake --profile profiles/workstation figures/fig4.pdf`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/artefacts.smk"


rule all:
    default_target: True
    input:
        ARTEFACT_TARGETS,
        "results/models.csv",
