# The workflow's configuration: each registry entry's default grid filled in, then the schema, the plugins (they add
# the strategies and datasets a config may name) and the checks across keys (advprune.plan.check_config).
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from advprune import artefacts, plan, plugins

# A registry entry's default_config is its grid where config.yaml has none (a new figure needs no config edit).
config["artefacts"] = artefacts.with_default_configs(config.get("artefacts", {}))
validate(config, "../schemas/config.schema.yaml")
try:
    PLUGINS = plugins.load(config["plugins"])
except (ValueError, FileNotFoundError) as error:
    raise WorkflowError(f"invalid config: plugins: {error}") from None
try:
    plan.check_config(config)
except ValueError as error:
    raise WorkflowError(f"invalid config: {error}") from None
