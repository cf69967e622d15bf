"""What a report caption states about the run, read from the config, so a caption cannot contradict it.

`caption_facts` is handed to each artefact's rule as `params.caption`; the caption templates (captions/*.rst, Jinja)
print its values. Each kind of artefact states its own (advprune.kinds: `caption_facts`); facts only the data knows
(n per point, collapsed runs, devices) are on the artefact itself.
"""

from __future__ import annotations

from typing import Any

from advprune.artefacts import BY_NAME
from advprune.kinds import active_roles, run_facts


def caption_facts(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The facts of artefact `name`'s caption; for the report's front page (no artefact), the run's settings."""
    if name in BY_NAME:
        return BY_NAME[name].caption_facts(config)
    return run_facts(config, active_roles(config))
