"""One checkpoint -> its metrics: clean accuracy on the full test set, standard AutoAttack on the first n points."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advprune import datasets
from advprune.autoattack_eval import predict, run_autoattack
from advprune.checkpoint import model_from_checkpoint, read_checkpoint
from advprune.provenance import run_record
from advprune.runtime import device_name, library_versions

SCHEMA = "advprune.metrics/1"
_log = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint_path: str | Path,
    *,
    n_examples: int,
    data_root: Path,
    device: torch.device,
    batch_size: int = 1000,
    seed: int = 0,
    expected_dataset: str | None = None,
    expected_model: str | None = None,
    state_path: Path | None = None,
    jobs_on_device: int = 1,
    gpu: str | None = None,
) -> dict[str, Any]:
    """Evaluate a finished training run on the canonical test set it was trained beside; see the README for each key.

    Refuses (ValueError) a damaged checkpoint (a missing key, a value of the wrong type, an eps that is not a finite
    number in (0, 1]), a checkpoint of another dataset or model than expected, an unfinished run, and a dataset
    file that is not the one the model was trained on. With `state_path`, AutoAttack saves its state there after each
    attack and an evaluation started again continues from it (see `run_autoattack`); the caller deletes it once the
    metrics are stored.
    """
    start = time.perf_counter()
    checkpoint, checkpoint_sha256 = read_checkpoint(checkpoint_path, map_location="cpu")
    dataset, model_name = checkpoint["dataset"], checkpoint["architecture"]["name"]
    for what, expected, actual in (("dataset", expected_dataset, dataset), ("model", expected_model, model_name)):
        if expected is not None and expected != actual:
            raise ValueError(f"{checkpoint_path}: expected a {what} {expected!r} checkpoint, but it is {actual!r}")
    if not checkpoint["complete"]:
        raise ValueError(f"{checkpoint_path}: the training run is unfinished (complete = False); finish training first")

    data_file = datasets.canonical_path(data_root, dataset)
    info = datasets.get_dataset(dataset)
    if checkpoint["architecture"]["num_classes"] != info.num_classes:  # else an IndexError deep in AutoAttack
        raise ValueError(f"{checkpoint_path}: architecture.num_classes is {checkpoint['architecture']['num_classes']}, "
                         f"but {dataset} has {info.num_classes} classes: not a model of this dataset")
    arrays = datasets.load_canonical(data_file, info)
    actual_sha = datasets.file_sha256(data_file)
    if actual_sha != checkpoint["dataset_sha256"]:
        raise ValueError(
            f"{checkpoint_path}: trained on a {dataset} file with sha256 {checkpoint['dataset_sha256']}, but "
            f"{data_file} has sha256 {actual_sha}; re-prepare the dataset (delete {data_file} and run `prepare`) "
            "or retrain the model on the current file"
        )
    n_test = len(arrays.y_test)
    if not 1 <= n_examples <= n_test:
        raise ValueError(f"n_examples must be in [1, {n_test}] (the size of the {dataset} test set), got {n_examples}")

    model = model_from_checkpoint(checkpoint, device, where=str(checkpoint_path))
    x_test, y_test = _to_tensors(arrays.x_test, arrays.y_test, device)
    clean_start = time.perf_counter()
    clean_acc = (predict(model, x_test, batch_size, device) == y_test).sum().item() / n_test
    clean_seconds = time.perf_counter() - clean_start
    eps = float(checkpoint["settings"]["eps"])
    _log.info("clean accuracy %.2f%% on %d test points, %.1f s; AutoAttack (standard, Linf, eps %.4g) on the first %d",
              100 * clean_acc, n_test, clean_seconds, eps, n_examples)

    result = run_autoattack(
        model, x_test[:n_examples], y_test[:n_examples], eps=eps, device=device, batch_size=batch_size, seed=seed,
        state_path=state_path, keep_state=True,  # deleted by the caller once the metrics are written
    )
    return {
        "schema": SCHEMA,
        "checkpoint": str(checkpoint_path),
        "checkpoint_sha256": checkpoint_sha256,  # the model measured: readers pair these metrics only with it
        "dataset": dataset,
        "model": model_name,
        "run": checkpoint["run"],
        "eps": eps,
        "norm": "Linf",
        "version": "standard",
        "n_examples": n_examples,
        "n_test": n_test,
        "clean_acc": clean_acc,
        "clean_acc_subset": result.clean_acc,
        "autoattack_acc": result.robust_acc,
        "robust_acc_after": result.robust_acc_after,
        "attacks_run": result.attacks_run,
        "attacks_skipped": result.attacks_skipped,
        "max_perturbation": result.max_perturbation,
        "clean_seconds": clean_seconds,
        "attack_seconds": result.seconds,
        "eval_seconds": time.perf_counter() - start + result.resumed_seconds,  # with AutoAttack's time before a resume
        "warnings": result.warnings,
        "device": device_name(device),
        "versions": library_versions(),
        "dataset_sha256": checkpoint["dataset_sha256"],
        "seed": seed,
        "batch_size": batch_size,
        "provenance": run_record(
            config={"n_examples": n_examples, "eps": eps, "norm": "Linf", "version": "standard", "seed": seed,
                    "batch_size": batch_size, "checkpoint_sha256": checkpoint_sha256},
            dataset_sha256=checkpoint["dataset_sha256"], device=device_name(device), jobs_on_device=jobs_on_device,
            gpu=gpu,
        ),
    }


def _to_tensors(images: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, H, W, C] -> float [N, C, H, W] in [0, 1], contiguous (AutoAttack needs contiguous NCHW)."""
    x = datasets.images_to_device(images, device).float().div(255)
    return x, torch.from_numpy(labels).to(device=device, dtype=torch.long)
