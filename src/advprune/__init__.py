"""advprune: data pruning for RS-FGSM adversarial training, evaluated with AutoAttack."""

__version__ = "0.1.0"

# Bump whenever a change to the library would change trained weights or evaluation metrics. The workflow passes it to
# every training and evaluation rule as a parameter, so Snakemake reruns exactly the affected models, and only then.
METHOD_VERSION = 2
