# Data pruning for RS-FGSM adversarial training, reproduced artefact by artefact.
# Run `snakemake --profile profiles/demo` (offline, CPU) or `snakemake --profile profiles/workstation figures/fig4.pdf`.
import sys
from pathlib import Path

from snakemake.utils import min_version

# This checkout's package, as its jobs get it (rules/environment.smk): not another checkout's that an installed
# environment points to (a worktree sharing .venv planned with the main checkout's code, and failed when it changed).
sys.path.insert(0, str(Path(workflow.basedir, "src")))

from advprune.identity import PRECISIONS, run_pattern
from advprune.kinds import ModelGrid

min_version("9.0")


configfile: "config.yaml"


report: "captions/workflow.rst"


# Jobs find `python -m advprune` through PATH (rules/environment.smk puts this interpreter first).
envvars:
    "PATH",


include: "rules/config.smk"
include: "rules/environment.smk"
include: "rules/resources.smk"
include: "rules/common.smk"
# One global block of tight wildcard patterns (the run pattern is built from the strategy registry).
wildcard_constraints:
    dataset=r"[a-z0-9][a-z0-9-]*",
    precision="|".join(PRECISIONS),
    run=run_pattern(),
    seed=r"\d+",
    n=r"\d+",
    artefact="|".join(artefacts.names(ModelGrid)),


include: "rules/data.smk"
include: "rules/prefix.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/artefacts.smk"
include: "rules/targets.smk"


# The target rule runs nothing; under a cluster executor it must not become a job.
localrules:
    all,


rule all:
    default_target: True
    input:
        ARTEFACT_TARGETS,
        "results/models.csv",
