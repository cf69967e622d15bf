# Path templates and the input and params functions the rules share: models, tidy tables, artefacts' code (each
# artefact's own inputs and command are its kind's, advprune.kinds). The names imported here serve every rules file.
import os
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from advprune import METHOD_VERSION, artefacts, plan
from advprune.identity import EVALUATION_FILE, MODEL_DIRECTORY, ModelKey
from advprune.imports import module_files
from advprune.kinds import artefact_table, data_file

# A model's directory names every setting that changes its weights (advprune.identity); a model grid's tidy table
# holds one row per model of its grid (rules/aggregate.smk).
DATA_FILE = data_file(config, "{dataset}")
ARTEFACT_TABLE = artefact_table("{artefact}")
# Every model of the configured plan, by its directory: built once at DAG build, so a job's model key is looked up,
# never parsed back from its path.
PLANNED_MODELS = plan.all_models(config)
MODEL_KEYS = {key.directory: key for key in PLANNED_MODELS}


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


def finished(keys):
    """Under `partial: true`, only the models whose evaluation exists; otherwise all of them."""
    if not config["partial"]:
        return keys
    done = [key for key in keys if Path(key.evaluation_file(config["n_examples"])).exists()]
    if not done:
        raise WorkflowError("partial: true, but none of the models this artefact needs has been evaluated yet")
    return done


def artefact_models(name):
    return finished(artefacts.get(name).models(config))


def table_inputs(keys):
    """What `collect` reads of each model."""
    return {
        "summaries": [f"{key.directory}/train.json" for key in keys],
        "evaluations": [key.evaluation_file(config["n_examples"]) for key in keys],
    }


def model_key(w):
    """The key of a model job's wildcards: the plan's. A model outside the plan (a path typed as a target, say a seed
    the config does not name) is read from the wildcards by ModelKey.from_run_name, the inverse of ModelKey.run."""
    directory = MODEL_DIRECTORY.format(dataset=w.dataset, precision=w.precision, run=w.run, seed=w.seed)
    return MODEL_KEYS.get(directory) or ModelKey.from_run_name(w.dataset, w.precision, w.run, w.seed)


def training_arguments(w):
    return quoted(*plan.training_words(model_key(w), config))


def artefact_inputs(artefact):
    """Its kind's inputs (advprune.kinds), and its code: the modules its builder imports and the package data it
    reads."""
    code = code_files(*artefact.code_modules)
    code += [workflow_file("src/advprune", name) for name in artefact.package_data]
    return {**artefact.inputs(config), "code": code}


def provenance_file(name):
    """Beside every artefact: the code, configuration, data and models it was built from (advprune.provenance)."""
    return report(f"figures/{name}.provenance.json", category="Provenance", labels={"artefact": name})
