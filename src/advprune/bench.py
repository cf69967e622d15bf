"""`python -m advprune bench`: what RS-FGSM training and AutoAttack cost on this machine, per MNIST and CIFAR-10 shape.

(a) a reference-style job, written as Wong et al.'s scripts are: fp32, a torch DataLoader over CPU tensors (CIFAR-10's
crop and flip per item in the loader), batches copied to the device, two `.item()` host synchronisations per step;
(b) this project's Trainer at k = 1, 2, 4, 8 processes at once on the same device; (c) standard AutoAttack on the
k = 1 model. Data are synthetic uint8 images of the real shape with a learnable label (a noisy class template), so
the model learns in two epochs and AutoAttack has robust points to attack. Epoch times are those of the last epoch
(the first warms up), training only, as `train.json` counts them; "per model-epoch" divides by k (aggregate
throughput) and scales to the full training set. Each job runs PyTorch on one thread, as the workflow's jobs do.
"""

from __future__ import annotations

import multiprocessing
import queue
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from advprune.runtime import RunFailure, write_json

SCHEMA = "advprune.bench/1"
SHAPES = {"mnist": ((28, 28, 1), 60000, 10000), "cifar10": ((32, 32, 3), 50000, 10000)}  # image, train, test


@dataclass(frozen=True)
class Size:
    name: str
    train_points: dict[str, int]
    epochs: int
    jobs: tuple[int, ...]
    autoattack_points: int
    overrides: tuple[str, ...] = ()


# A third of MNIST's and a fifth of CIFAR-10's training set (200 and 79 steps per epoch): enough steps to time an
# epoch, scaled to the full set, in a benchmark that fits the device check's minutes.
FULL_SIZE = Size("full", {"mnist": 20000, "cifar10": 10000}, 2, (1, 2, 4, 8), 1000)
TINY_SIZE = Size("tiny", {"mnist": 200, "cifar10": 16}, 2, (1, 2), 4, ("monitor.n_points=8", "monitor.pgd_steps=2"))


def synthetic(shape: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, H, W, C] of `shape`, each 80% its class's fixed black-and-white template and 20% noise, and
    labels. Two classes differ by 0.8 on about half the pixels, beyond any eps of the paper (0.3, 8/255): a model can
    become robust, so AutoAttack has robust points to work on, as on the real data."""
    image, _, _ = SHAPES[shape]
    templates = 255 * np.random.default_rng(1234).integers(0, 2, (10, *image))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = 0.8 * templates[labels] + 0.2 * rng.integers(0, 256, (n, *image))
    return images.astype(np.uint8), labels.astype(np.int64)


def run(size: Size, device_request: str, shapes: tuple[str, ...], jobs: tuple[int, ...] | None = None,
        log=print, save=lambda record: None, autoattack_points: int | None = None,
        max_seconds: float | None = None) -> dict[str, Any]:
    """Measure every shape and job count; returns the JSON record (see module doc). `save` gets the record after
    each measurement (`complete` false until the last), so a run stopped midway keeps what it measured; past
    `max_seconds` the running jobs are stopped and RunFailure says so."""
    from advprune.provenance import code_state
    from advprune.runtime import choose_device, device_name, library_versions

    device = choose_device(device_request)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    if autoattack_points is not None:
        size = replace(size, autoattack_points=autoattack_points)
    record: dict[str, Any] = {
        "schema": SCHEMA, "size": size.name, "device": device_name(device), "device_request": device_request,
        "versions": library_versions(), **code_state(), "threads_per_job": 1, "data": "synthetic", "shapes": {},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "complete": False,
    }
    with tempfile.TemporaryDirectory(prefix="advprune-bench-") as scratch:
        for i, shape in enumerate(shapes):
            def save_shape(result: dict[str, Any], shape: str = shape) -> None:
                record["shapes"][shape] = result
                save(record)

            _measure_shape(size, shape, str(device), jobs or size.jobs, Path(scratch), log, save_shape, deadline)
            record["complete"] = i == len(shapes) - 1
            save(record)
    return record


def _measure_shape(size: Size, shape: str, device: str, jobs: tuple[int, ...], scratch: Path, log, save,
                   deadline: float | None) -> None:
    """Training at each k, then AutoAttack; `save` gets the shape's result after each measurement."""
    from advprune.settings import resolve

    settings = resolve(shape, overrides=[f"epochs={size.epochs}", *size.overrides])
    points, full = size.train_points[shape], SHAPES[shape][1]
    scale = full / points
    # Fresh processes (CUDA cannot be forked once initialised), forked from a server that has imported torch once.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "advprune.training", "advprune.autoattack_eval"])
    (reference,) = _in_processes(context, [(_reference_job, (shape, points, settings, device))], deadline)
    log(f"{shape}: reference-style job {reference:.3f} s/epoch ({reference * scale:.2f} s per full epoch)")
    result: dict[str, Any] = {
        "model": settings["model"], "train_points": points, "full_train_points": full, "batch_size":
        settings["batch_size"], "epochs": size.epochs,
        "reference": {"epoch_seconds": reference, "seconds_per_model_epoch": reference * scale}, "jobs": [],
        "autoattack": None,
    }
    save(result)
    for k in jobs:
        seconds = _concurrent_jobs(context, k, shape, points, settings, device, scratch / f"{shape}-k{k}", deadline)
        per_model_epoch = float(np.mean(seconds)) / k * scale
        result["jobs"].append({
            "k": k, "epoch_seconds": seconds, "seconds_per_model_epoch": per_model_epoch,
            "throughput_vs_reference": reference * scale / per_model_epoch,
        })
        log(f"{shape}: k={k} {np.mean(seconds):.3f} s/epoch each, {per_model_epoch:.2f} s per full model-epoch, "
            f"{reference * scale / per_model_epoch:.2f}x the reference-style job")
        save(result)
    model = scratch / f"{shape}-k{jobs[0]}" / "job0" / "model.pt"
    (result["autoattack"],) = _in_processes(
        context, [(_autoattack_job, (shape, size.autoattack_points, model, device))], deadline)
    aa = result["autoattack"]
    log(f"{shape}: AutoAttack n={aa['n']} {aa['seconds']:.1f} s ({aa['seconds_per_1000']:.1f} s per 1000 points; "
        f"clean {aa['clean_acc']:.2f}, robust {aa['robust_acc']:.2f})")
    save(result)


def _concurrent_jobs(context, k: int, shape: str, points: int, settings: dict, device: str, out: Path,
                     deadline: float | None) -> list[float]:
    """k Trainer processes released at once by a barrier; each one's last-epoch training seconds."""
    barrier = context.Barrier(k)
    return _in_processes(context, [(_project_job, (shape, points, settings, device, out / f"job{i}", i, barrier))
                                   for i in range(k)], deadline)


def _in_processes(context, calls: list[tuple], deadline: float | None = None) -> list[Any]:
    """Each (function, args) in a fresh process of its own, all at once (not a Pool: its daemonic workers may not
    start the reference's DataLoader workers); their results in order. A failure raises here, naming the call."""
    results = context.Queue()
    processes = [context.Process(target=_report, args=(i, function, args, results)) for i, (function, args)
                 in enumerate(calls)]
    for process in processes:
        process.start()
    collected: dict[int, Any] = {}
    while len(collected) < len(calls):
        if deadline is not None and time.monotonic() > deadline:
            for process in processes:
                process.terminate()
            raise RunFailure(f"bench: out of time (--max-seconds) during {calls[0][0].__name__}; "
                             "the JSON holds every measurement finished before")
        try:
            i, value = results.get(timeout=1)
            collected[i] = value
        except queue.Empty:
            lost = [i for i, process in enumerate(processes) if not process.is_alive() and i not in collected]
            if lost:  # killed without a word (out of memory, a signal)
                raise RunFailure(f"bench: {calls[lost[0]][0].__name__} died with exit code "
                                 f"{processes[lost[0]].exitcode}") from None
    for process in processes:
        process.join()
    failed = {i: value for i, value in collected.items() if isinstance(value, _Failure)}
    if failed:
        i, failure = next(iter(failed.items()))
        raise RunFailure(f"bench: {calls[i][0].__name__} failed: {failure.message}")
    return [collected[i] for i in range(len(calls))]


@dataclass(frozen=True)
class _Failure:
    message: str


def _report(i: int, function, args: tuple, results) -> None:
    try:
        results.put((i, function(*args)))
    except BaseException as error:  # reported to the parent, which would otherwise wait forever
        results.put((i, _Failure(f"{type(error).__name__}: {error}")))


def _project_job(shape: str, points: int, settings: dict, device: str, out: Path, seed: int, barrier) -> float:
    import torch

    from advprune.identity import ModelKey
    from advprune.training import Trainer

    torch.set_num_threads(1)
    x, y = synthetic(shape, points, seed)
    run = ModelKey.from_settings(shape, "random", 1.0, None, seed, settings)
    trainer = Trainer(run, settings, x, y, out_dir=out, device=torch.device(device), dataset_sha256="synthetic",
                      show_progress=False)
    barrier.wait()
    summary = trainer.fit()
    return float(summary["history"][-1]["seconds"])


def _reference_job(shape: str, points: int, settings: dict, device_text: str) -> float:
    """Wong et al.'s training loop (train_mnist.py, train_fgsm.py) in fp32; the last epoch's seconds."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from advprune.models import build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    device = torch.device(device_text)
    s = settings
    x, y = synthetic(shape, points, 0)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255)
    labels = torch.from_numpy(y)
    pad = s["crop_padding"]

    # CIFAR10/utils.py's loader: 2 workers (forked, as on Linux by default), MNIST's: none.
    loader = DataLoader(_Augmented(images, labels, pad, s["horizontal_flip"]), batch_size=s["batch_size"],
                        shuffle=True, num_workers=2 if pad else 0, multiprocessing_context="fork" if pad else None)
    model = build_model(s["model"], in_channels=images.shape[1], num_classes=10, image_size=images.shape[2],
                        normalization=s["normalization"]).to(device).train()
    steps = len(loader) * s["epochs"]
    if s["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=s["lr_max"], weight_decay=s["weight_decay"])
        scheduler = None
    else:
        opt = torch.optim.SGD(model.parameters(), lr=s["lr_max"], momentum=s["momentum"],
                              weight_decay=s["weight_decay"])
        scheduler = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0, max_lr=s["lr_max"], step_size_up=steps / 2,
                                                      step_size_down=steps / 2)
    eps, alpha = s["eps"], s["alpha"]
    seconds = 0.0
    for epoch in range(s["epochs"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        train_loss = train_acc = 0.0
        for i, (X, Y) in enumerate(loader):
            X, Y = X.to(device), Y.to(device)
            if scheduler is None:
                opt.param_groups[0]["lr"] = float(np.interp(epoch + (i + 1) / len(loader),
                                                            [0, s["epochs"] * 2 / 5, s["epochs"]], [0, s["lr_max"], 0]))
            delta = torch.zeros_like(X).uniform_(-eps, eps)
            if s["clip_random_start"]:
                delta = torch.max(torch.min(1 - X, delta), 0 - X)
            delta.requires_grad = True
            loss = F.cross_entropy(model(X + delta), Y)
            loss.backward()
            delta = torch.clamp(delta + alpha * torch.sign(delta.grad.detach()), -eps, eps)
            delta = torch.max(torch.min(1 - X, delta), 0 - X).detach()
            output = model(torch.clamp(X + delta, 0, 1))
            loss = F.cross_entropy(output, Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            train_loss += loss.item() * Y.size(0)
            train_acc += (output.max(1)[1] == Y).sum().item()
            if scheduler is not None:
                scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return seconds


class _Augmented:
    """The reference's per-item transforms on the CPU: RandomCrop(32, padding=4), RandomHorizontalFlip."""

    def __init__(self, images, labels, pad: int, flip: bool):
        self.images, self.labels, self.pad, self.flip = images, labels, pad, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        import torch.nn.functional as F

        image, pad = self.images[i], self.pad
        if pad:
            h, w = image.shape[1:]
            top, left = np.random.randint(0, 2 * pad + 1, 2)
            image = F.pad(image, (pad, pad, pad, pad))[:, top:top + h, left:left + w]
        if self.flip and np.random.rand() < 0.5:
            image = image.flip(2)
        return image, self.labels[i]


def _autoattack_job(shape: str, n: int, checkpoint: Path, device_text: str) -> dict[str, Any]:
    import torch

    from advprune.autoattack_eval import run_autoattack
    from advprune.checkpoint import load_checkpoint, model_from_checkpoint

    torch.set_num_threads(1)
    device = torch.device(device_text)
    payload = load_checkpoint(checkpoint, map_location="cpu")
    model = model_from_checkpoint(payload, device)
    x, y = synthetic(shape, n, seed=10_000)  # points the model was not trained on
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().float().div(255).to(device)
    result = run_autoattack(model, images, torch.from_numpy(y).to(device), eps=float(payload["settings"]["eps"]),
                            device=device, batch_size=1000)
    return {"n": n, "seconds": result.seconds, "seconds_per_1000": result.seconds * 1000 / n,
            "clean_acc": result.clean_acc, "robust_acc": result.robust_acc}


def timings(record: dict[str, Any], jobs_per_gpu: int, where: str = "bench file") -> dict[str, Any]:
    """A bench record as `advprune cost` timings: seconds per full-data epoch at `jobs_per_gpu` jobs per device
    (aggregate) and single-job AutoAttack seconds per 1000 points."""
    datasets = {}
    for shape, measured in record["shapes"].items():
        if measured["autoattack"] is None:
            raise ValueError(f"{where}: its {shape} run stopped before AutoAttack (complete: false); run bench again")
        by_k = {row["k"]: row for row in measured["jobs"]}
        if jobs_per_gpu not in by_k:
            raise ValueError(f"{where} measured {shape} at k = {', '.join(map(str, sorted(by_k)))} jobs per device, "
                             f"not {jobs_per_gpu}")
        datasets[shape] = {"epoch_seconds": by_k[jobs_per_gpu]["seconds_per_model_epoch"],
                           "autoattack_seconds_per_1000": measured["autoattack"]["seconds_per_1000"]}
    return {"device": f"{record['device']} (advprune bench, {record['size']} size, {record['created_utc']}; "
                      f"training at {jobs_per_gpu} job(s) per device)", "datasets": datasets}


def command(tiny: bool, device: str, out: Path, shapes: tuple[str, ...], jobs: tuple[int, ...] | None,
            autoattack_points: int | None = None, max_seconds: float | None = None) -> dict:
    """`advprune bench`: measure, print as it goes, write `out` (checked writable first)."""
    from advprune.runtime import check_writable_directory

    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory; --out names the JSON file")
    check_writable_directory(out.parent, "--out", out)
    return run(TINY_SIZE if tiny else FULL_SIZE, device, shapes, jobs, save=lambda record: write_json(out, record),
               autoattack_points=autoattack_points, max_seconds=max_seconds)
