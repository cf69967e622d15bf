# Config loading and validation, wildcard constraints, and the functions that turn artefact grids into inputs.
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from advprune import METHOD_VERSION, plugins
from advprune.gpu_slots import JOBS_PER_GPU as JOBS_PER_GPU_VARIABLE
from advprune import workflow as plan
from advprune.report.captions import caption_facts
from advprune.report.claims import load_claims

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
)

# Path templates: a model's directory names every setting that changes its weights (see advprune.workflow).
MODEL_DIR = "results/models/{dataset}/{precision}/{run}/seed{seed}"
DATA_FILE = str(Path(config["data_root"], "{dataset}.npz"))


def model_file(name):
    return str(Path(MODEL_DIR, name))


def workflow_file(*parts):
    """A file of this checkout as an input path relative to the working directory. Snakemake records each job's
    input paths and replans a job whose set changed: absolute paths would replan every table and figure of a
    checkout moved or re-cloned with its results."""
    return os.path.relpath(Path(workflow.basedir, *parts))


def report_code(*modules):
    """Source files of advprune.report that a job depends on; editing one reruns exactly the jobs that use it
    (Snakemake does not follow Python imports, so they are listed as inputs)."""
    return [workflow_file("src/advprune/report", f"{module}.py") for module in modules]


def quoted(*words):
    """Every value that reaches a shell goes through shlex.quote."""
    return " ".join(shlex.quote(str(word)) for word in words)


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


# Every artefact's files, by name: `snakemake <name>` builds one (rules/targets.smk), `all` builds them all.
PDF_ARTEFACTS = plan.MODEL_ARTEFACTS + plan.DATA_ARTEFACTS + plan.SIMULATED_ARTEFACTS
ARTEFACT_FILES = {
    **{name: [f"figures/{name}.pdf"] for name in PDF_ARTEFACTS},
    **{name: [f"figures/{name}.{ext}" for ext in ("pdf", "csv", "tex", "md")] for name in plan.TABLES},
    "claims": ["figures/claims.csv", "figures/claims.md"],
}
# `all` builds the artefacts of the configured roles (config `roles`); the toy model needs none.
BUILT_ARTEFACTS = plan.built_artefacts(config) + ["claims"]
ARTEFACT_TARGETS = [path for name in BUILT_ARTEFACTS for path in ARTEFACT_FILES[name]]


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
    run = plan.parse_run(w.run)
    words = [
        "--dataset", w.dataset, "--strategy", run["strategy"], "--keep", run["keep"], "--seed", w.seed,
        "--precision", w.precision, "--device", config["device"], "--data-root", config["data_root"],
    ]
    if run["prune_epoch"] is not None:
        words += ["--prune-epoch", run["prune_epoch"], "--schedule-after-pruning", run["schedule"]]
    for override in config["training_overrides"].get(w.dataset, []):
        words += ["--set", override]
    return quoted(*words)


# -- tables and artefacts --------------------------------------------------------------------------------

def table_inputs(keys):
    return {
        "summaries": [f"{key.directory}/train.json" for key in keys],
        "evaluations": [evaluation_file(key) for key in keys],
    }


FIGURE_CODE = report_code("figures", "style", "paper", "stats", "labels", "selection", "commands")
TABLE_CODE = report_code("tables", "tablefiles", "style", "paper", "stats", "labels", "selection", "commands")
EMBEDDING_CODE = report_code("embedding", "tablefiles", "figures", "style", "paper", "labels", "commands")
# The toy model's simulation and the pruning it reuses are inputs too: editing either reruns it.
TOY_CODE = [
    *report_code("toy", "figures", "style", "tablefiles", "labels", "commands"),
    *(workflow_file("src/advprune", f"{module}.py") for module in ("toy", "pruning")),
]


def toy_options():
    """`python -m advprune toy` options from artefacts.toy (a parameter: editing the config reruns the toy)."""
    spec = config["artefacts"]["toy"]
    words = []
    for key in ("d", "p_R", "p_robust", "p_fragile", "n", "eps_over_eta", "steps", "lr"):
        words += [f"--{key.replace('_', '-')}", spec[key]]
    words += ["--keep", *spec["keep"], "--strategies", *spec["strategies"], "--seeds", *plan.seeds_of(spec["seeds"])]
    return quoted(*words)


def single_prune_epoch(name):
    """The --prune-epoch option of artefacts drawn at one pruning epoch (fig1 varies it)."""
    epoch = config["artefacts"][name]["prune_epoch"]
    return quoted("--prune-epoch", epoch) if isinstance(epoch, int) else ""


def embedding_inputs(name):
    """fig8 / table2 read the canonical data of each role and the pruning decision of one model."""
    pruned = plan.pruned_model(config, name)
    return {
        "data": [f"{config['data_root']}/{config['datasets'][role]}.npz" for role in plan.artefact_roles(config, name)],
        "pruning": f"{pruned.directory}/pruning.npz",
    }


def embedding_variants(name):
    """One `--variant NAME=DATA[:PRUNING]` per panel/row: each role's dataset, plus the pruned model's kept set
    right after the dataset it was trained on."""
    pruned = plan.pruned_model(config, name)
    words = []
    for role in plan.artefact_roles(config, name):
        dataset = config["datasets"][role]
        data = f"{config['data_root']}/{dataset}.npz"
        words += ["--variant", f"{dataset}={data}"]
        if dataset == pruned.dataset:
            words += ["--variant", f"{dataset} pruned={data}:{pruned.directory}/pruning.npz"]
    return quoted(*words)


