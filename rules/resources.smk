# What a training or evaluation job asks of the scheduler: memory and minutes per dataset (config job_resources; a
# dataset it does not name gets its `default`), and on a local run one of the GPU slots.


def job_resource(rule_name, resource):
    """A rule's resource as a function of the job's dataset (advprune.plan.job_resources)."""
    return lambda w: plan.job_resources(config, w.dataset)[rule_name][resource]


# GPU jobs at once on a local run: gpus x jobs_per_gpu (each training and evaluation asks for gpu_slots=1). The
# picker's locks (advprune.gpu_slots) hold every job to jobs_per_gpu per GPU whatever Snakemake starts; this limit
# only keeps Snakemake from starting jobs that would wait for a slot. A --resources gpu_slots=N given by hand wins.
if config["gpus"] and "gpu_slots" not in workflow.global_resources:
    workflow.register_resource("gpu_slots", config["gpus"] * config["jobs_per_gpu"])
GPU_SLOTS = 0 if config["device"] == "cpu" else 1
