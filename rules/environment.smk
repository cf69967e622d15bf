# Where the jobs run: a profile left with placeholders is refused, and every job's shell finds this interpreter, the
# package and the plugins, and knows it is a workflow job.
import os
import shlex
import sys
from pathlib import Path

from advprune import plugins
from advprune.cli import WORKFLOW_JOB
from advprune.gpu_slots import JOBS_PER_GPU as JOBS_PER_GPU_VARIABLE


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
    # A workflow job's `train`, `prefix` and `evaluate` wait for a busy output (a job a killed Snakemake left running)
    # and end without work on one they find finished: a rerun never redoes, nor fails and so removes, finished work.
    f"export {WORKFLOW_JOB}=1; "
)
