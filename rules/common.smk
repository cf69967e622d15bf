# Config loading and validation, wildcard constraints, and the functions that turn artefact grids into inputs.
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from advprune import METHOD_VERSION
from advprune import settings as advprune_settings
from advprune import workflow as plan
from snakemake.settings.types import DeploymentMethod

validate(config, "../schemas/config.schema.yaml")
try:
    plan.check_config(config)
except ValueError as error:
    raise WorkflowError(f"invalid config: {error}") from None


# Under --sdm conda a job's environment provides `python`; otherwise run the interpreter Snakemake itself runs on, so
# an un-activated virtual environment (.venv/bin/snakemake) still finds torch and advprune.
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    ADVPRUNE = f"PYTHONPATH={shlex.quote(str(Path(workflow.basedir, 'src')))} python -m advprune"
else:
    ADVPRUNE = f"{shlex.quote(sys.executable)} -m advprune"

MODEL_DIR = "results/models/{dataset}/{precision}/{run}/seed{seed}"
DATA_FILE = config["data_root"] + "/{dataset}.npz"


def report_code(*modules):
    """Source files of advprune.report a rule depends on: editing one reruns exactly the rules that use it
    (Snakemake does not follow Python imports, so they are listed as inputs)."""
    return [str(Path(workflow.basedir, "src/advprune/report", f"{module}.py")) for module in modules]



wildcard_constraints:
    dataset=r"[a-z0-9][a-z0-9-]*",
    precision=r"fp32|bf16",
    run=plan.run_pattern(),
    seed=r"\d+",
    n=r"\d+",
    artefact="|".join(plan.MODEL_ARTEFACTS + plan.DATA_ARTEFACTS),


def quoted(*words):
    """Every value that reaches a shell goes through shlex.quote."""
    return " ".join(shlex.quote(str(word)) for word in words)


def training_settings(dataset):
    """The resolved settings of a dataset: a rule parameter, so changing one retrains exactly its models."""
    return advprune_settings.resolve(
        dataset,
        overrides=config["training_overrides"].get(dataset, []),
        precision=config["precision"],
    )


def model_files(key, *names):
    return [f"{key.directory}/{name}" for name in names]


def evaluation_file(key):
    return f"{key.directory}/autoattack-n{config['n_examples']}.json"


def finished(keys):
    """Under `partial: true`, only the models whose evaluation exists; otherwise all of them."""
    if not config["partial"]:
        return keys
    done = [key for key in keys if Path(evaluation_file(key)).exists()]
    if not done:
        raise WorkflowError("partial: true, but none of the models this artefact needs has been evaluated yet")
    return done


def artefact_models(name):
    return finished(plan.artefact_models(config, name))


ARTEFACT_TARGETS = [
    *(f"figures/{name}.pdf" for name in plan.MODEL_ARTEFACTS + plan.DATA_ARTEFACTS),
    *(f"figures/{name}.{ext}" for name in plan.TABLES for ext in ("csv", "tex", "md")),
]
