# Config loading and validation, wildcard constraints, and the functions that turn artefact grids into inputs.
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from advprune import METHOD_VERSION, artefacts, plan, plugins
from advprune.kinds import ModelGrid, artefact_table, data_file
from advprune.cli import WORKFLOW_JOB
from advprune.gpu_slots import JOBS_PER_GPU as JOBS_PER_GPU_VARIABLE
from advprune.identity import EVALUATION_FILE, MODEL_DIRECTORY, ModelKey, run_pattern
from advprune.imports import module_files

# A registry entry's default_config is its grid where config.yaml has none (a new figure needs no config edit).
config["artefacts"] = artefacts.with_default_configs(config.get("artefacts", {}))
validate(config, "../schemas/config.schema.yaml")
try:
    # Plugins first: they add the strategies and datasets the config may name (advprune.plugins).
    PLUGINS = plugins.load(config["plugins"])
except (ValueError, FileNotFoundError) as error:
    raise WorkflowError(f"invalid config: plugins: {error}") from None
try:
    plan.check_config(config)
except ValueError as error:
    raise WorkflowError(f"invalid config: {error}") from None


def placeholder_resources(settings):
    """Resources a profile still sets to a CHANGE_ME placeholder, as 'where: name=value' (profiles/slurm ships its
    site-specific values so; submitted as they are, every job would fail at sbatch, or wait in a wrong queue)."""
    sources = [("default-resources", settings.default_resources or {})]
    sources += [(f"set-resources: {rule}", values) for rule, values in (settings.overwrite_resources or {}).items()]
    return [
        f"{where}: {name}={getattr(value, 'raw', value)}"
        for where, values in sources
        for name, value in values.items()
        if "CHANGE_ME" in str(getattr(value, "raw", value))
    ]


if placeholders := placeholder_resources(workflow.resource_settings):
    raise WorkflowError(
        f"the profile still has placeholders: {'; '.join(placeholders)}; set your site's values in the profile "
        "(slurm_account: `sacctmgr show assoc user=$USER`; slurm_partition: `sinfo -s`); README: 'On a Slurm cluster'"
    )


# Jobs run `python -m advprune`. This interpreter goes first on PATH, so an un-activated virtual environment
# (.venv/bin/snakemake) still finds torch and advprune; under --sdm conda the job's environment is activated in front
# of it, and finds advprune through PYTHONPATH, so the environments need not install the project.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
shell.prefix(
    f"export PYTHONPATH={shlex.quote(str(Path(workflow.basedir, 'src')))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f"export {plugins.ENVIRONMENT_VARIABLE}={shlex.quote(plugins.environment_value(PLUGINS))}; "
    # Jobs per GPU for the GPU picker (advprune.gpu_slots): exported, not a param, as sharing a GPU changes no result
    # and must retrain nothing.
    f"export {JOBS_PER_GPU_VARIABLE}={int(config['jobs_per_gpu'])}; "
    # A workflow job's `train` waits for a busy run directory (a job a killed Snakemake left running) and ends without
    # work on a run it finds finished: a rerun never retrains, nor fails and so removes, a finished model (README).
    f"export {WORKFLOW_JOB}=1; "
)

# Path templates: a model's directory names every setting that changes its weights (advprune.identity); an
# artefact's tidy table holds one row per model of its grid (rules/aggregate.smk).
DATA_FILE = data_file(config, "{dataset}")
ARTEFACT_TABLE = artefact_table("{artefact}")


def model_file(name):
    return str(Path(MODEL_DIRECTORY, name))


def workflow_file(*parts):
    """A file of this checkout as an input path relative to the working directory. Snakemake records each job's
    input paths and replans a job whose set changed: absolute paths would replan every table and figure of a
    checkout moved or re-cloned with its results."""
    return os.path.relpath(Path(workflow.basedir, *parts))


def code_files(*modules):
    """The package's source files that importing `modules` loads (advprune.imports, read from the imports at DAG
    build): a job depends on exactly the code it runs, so editing a module reruns those jobs and no others. The
    registry and the kinds are not among them (no builder imports them): each rule's entry is its params.entry and
    its command its params.command, so editing one entry reruns one artefact."""
    return [workflow_file(path) for path in module_files(Path(workflow.basedir, "src"), modules)]


def quoted(*words):
    """Every value that reaches a shell goes through shlex.quote."""
    return " ".join(shlex.quote(str(word)) for word in words)


def evaluation_file(key):
    return key.evaluation_file(config["n_examples"])


def finished(keys):
    """Under `partial: true`, only the models whose evaluation exists; otherwise all of them."""
    if not config["partial"]:
        return keys
    done = [key for key in keys if Path(evaluation_file(key)).exists()]
    if not done:
        raise WorkflowError("partial: true, but none of the models this artefact needs has been evaluated yet")
    return done


def artefact_models(name):
    return finished(artefacts.get(name).models(config))


def provenance_file(name):
    """Beside every artefact: the code, configuration, data and models it was built from (advprune.provenance)."""
    return report(f"figures/{name}.provenance.json", category="Provenance", labels={"artefact": name})


# -- training and evaluation --------------------------------------------------------------------------------

# Per-dataset scheduling estimates per rule (from SPEC's H100 measurements, with headroom); a profile may override
# them with set-resources. Datasets not listed get the default.
JOB_RESOURCES = {
    "train_model": {
        "mnist": {"mem_mb": 6000, "runtime": 20},
        "cifar10": {"mem_mb": 12000, "runtime": 60},
        "digits-mnist": {"mem_mb": 1500, "runtime": 5},
        "digits-cifar": {"mem_mb": 1500, "runtime": 5},
    },
    "evaluate_model": {
        "mnist": {"mem_mb": 6000, "runtime": 20},
        "cifar10": {"mem_mb": 12000, "runtime": 60},
        "digits-mnist": {"mem_mb": 1500, "runtime": 10},
        "digits-cifar": {"mem_mb": 1500, "runtime": 10},
    },
}
DEFAULT_RESOURCES = {"mem_mb": 8000, "runtime": 60}


# GPU jobs at once on a local run: gpus x jobs_per_gpu (each training and evaluation asks for gpu_slots=1). The
# picker's locks (advprune.gpu_slots) hold every job to jobs_per_gpu per GPU whatever Snakemake starts; this limit
# only keeps Snakemake from starting jobs that would wait for a slot. A --resources gpu_slots=N given by hand wins.
if config["gpus"] and "gpu_slots" not in workflow.global_resources:
    workflow.register_resource("gpu_slots", config["gpus"] * config["jobs_per_gpu"])
GPU_SLOTS = 0 if config["device"] == "cpu" else 1


def job_resource(rule_name, resource):
    return lambda w: JOB_RESOURCES[rule_name].get(w.dataset, DEFAULT_RESOURCES)[resource]


def training_arguments(w):
    key = ModelKey.from_run_name(w.dataset, w.precision, w.run, w.seed)
    return quoted(*plan.training_words(key, config))


# -- tables and artefacts --------------------------------------------------------------------------------

def table_inputs(keys):
    return {
        "summaries": [f"{key.directory}/train.json" for key in keys],
        "evaluations": [evaluation_file(key) for key in keys],
    }


def artefact_inputs(artefact):
    """Its kind's inputs (advprune.kinds), and its code: the modules its builder imports and the package data it
    reads."""
    code = code_files(*artefact.code_modules)
    code += [workflow_file("src/advprune", name) for name in artefact.package_data]
    return {**artefact.inputs(config), "code": code}
