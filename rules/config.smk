# The workflow's configuration, prepared as every advprune command prepares one (advprune.plan.prepare_config):
# default grids, the schema, the plugins, the checks across keys.
from snakemake.exceptions import WorkflowError

from advprune import plan

try:
    PLUGINS = plan.prepare_config(config, Path(workflow.basedir, "schemas/config.schema.yaml"))
except ValueError as error:
    raise WorkflowError(f"invalid config: {error}") from None
