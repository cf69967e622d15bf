"""RS-FGSM adversarial training with one-shot data pruning, epoch checkpoints and resume.

One code path for CPU and GPU: the training set lives on the device as uint8, batches are drawn and augmented
there, and per-step statistics stay on the device until the end of the epoch (no host synchronisation per step).
The run's state and its checkpoints are advprune.checkpoint's; its finished files and train.json, advprune.rundir's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from advprune.augment import augment
from advprune.checkpoint import (
    RunState, restore_training, run_identity, save_checkpoint, training_checkpoint, weights_sha256,
)
from advprune.datasets import get_dataset, images_to_device
from advprune.identity import ModelKey
from advprune.models import build_model
from advprune.monitor import check_finite, detect_collapse, pgd_accuracy
from advprune.perturbations import TRAINING_ATTACKS
from advprune.pruning import NEEDS_SCORES, kept_indices
from advprune.resume_state import read_resume
from advprune.rundir import train_record, write_results
from advprune.runtime import device_name
from advprune.schedules import cycled_momentum, progress, schedule_scale
from advprune.scoring import score_points
from advprune.settings import Settings

_log = logging.getLogger(__name__)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    def __init__(
        self,
        key: ModelKey,
        settings: Mapping[str, Any],
        x_train: np.ndarray,
        y_train: np.ndarray,
        *,
        out_dir: Path,
        device: torch.device,
        dataset_sha256: str,
        jobs_on_device: int = 1,
        gpu: str | None = None,
        show_progress: bool = True,
    ):
        key.check_settings(settings)
        # As the run's identity names them (a full-data run's schedule is `rescale`), frozen: read, never patched.
        self.settings = Settings(run_identity(key, settings, dataset_sha256)["settings"])
        self.key, self.device = key, device
        self.out_dir = Path(out_dir)
        self.dataset_sha256, self.jobs_on_device, self.show_progress = dataset_sha256, jobs_on_device, show_progress
        self.gpu = gpu
        self.images = images_to_device(x_train, device)
        self.labels = torch.from_numpy(np.asarray(y_train, dtype=np.int64)).to(device)
        n, c, h, _ = self.images.shape
        self.architecture = {
            "name": self.settings.model,
            "in_channels": c,
            "num_classes": get_dataset(key.dataset).num_classes,  # not the largest label + 1: a class may be absent
            "image_size": h,
            "normalization": self.settings.as_dict()["normalization"],
        }
        # Model initialisation follows the seed; everything random afterwards draws from `generator`, whose state is
        # checkpointed, so a resumed run continues the same random stream.
        torch.manual_seed(key.seed)
        self.model = build_model(
            self.architecture["name"],
            in_channels=c,
            num_classes=self.architecture["num_classes"],
            image_size=h,
            normalization=self.architecture["normalization"],
        ).to(device)
        self.optimizer = self._make_optimizer()
        self.generator = torch.Generator(device=device).manual_seed(key.seed)
        # The monitoring batch is fixed for the whole run and drawn from the full training set.
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(key.seed))[: self.settings.monitor.n_points]
        self.monitor_x = self.images[pick.to(device)].float() / 255
        self.monitor_y = self.labels[pick.to(device)]
        self.autocast = autocast_for(self.settings.precision, device)
        self.state = RunState()

    @property
    def resume_path(self) -> Path:
        return self.out_dir / "resume.pt"

    def _make_optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        if s.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=0.0, weight_decay=s.weight_decay)
        return torch.optim.SGD(self.model.parameters(), lr=0.0, momentum=s.momentum, weight_decay=s.weight_decay)

    def identity_record(self) -> dict[str, Any]:
        """What this run's checkpoints are recognised by (checkpoint.run_identity)."""
        return run_identity(self.key, self.settings, self.dataset_sha256)

    def _checkpoint(self, complete: bool) -> dict[str, Any]:
        return training_checkpoint(
            self.identity_record(), architecture=self.architecture, model=self.model, optimizer=self.optimizer,
            generator=self.generator, state=self.state, complete=complete,
        )

    def try_resume(self) -> bool:
        if not self.resume_path.exists():
            return False
        checkpoint = read_resume(
            self.resume_path, self.identity_record(), self.device, epochs=self.settings.epochs,
            n_train=len(self.labels), batch_size=self.settings.batch_size, keep=self.key.keep,
            prune_epoch=self.key.prune_epoch if self.key.prunes else None,
            rng_templates={"generator": self.generator.get_state(), "torch": torch.get_rng_state()},
        )
        self.state = restore_training(
            checkpoint, self.resume_path, model=self.model, optimizer=self.optimizer, generator=self.generator
        )
        self.state.resumed_at_epochs = [*self.state.resumed_at_epochs, self.state.epoch]
        return True

    def fork_from(self, prefix: Path) -> None:
        """Start this pruned run from its prefix (advprune.prefix): the state after its first prune_epoch full-data
        epochs, trained once for the seed. The prefix becomes this run's resume.pt and is read by try_resume, the
        code every resume goes through; a fork killed before its first epoch ends resumes from that file."""
        from advprune.prefix import adopt_prefix

        adopt_prefix(self, prefix)
        self.try_resume()
        self.state.resumed_at_epochs = self.state.resumed_at_epochs[:-1]  # a fork starts there, not resumes

    # -- the loop -------------------------------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> dict[str, Any] | None:
        """Train to the end and write the model; with `stop_at` (a prefix), stop after that epoch, with the state
        in resume.pt, and return None."""
        s, key = self.settings, self.key
        epochs = s.epochs if stop_at is None else stop_at
        n_train = len(self.labels)
        full_batches = -(-n_train // s.batch_size)
        self.model.train()
        bar = tqdm(
            total=epochs, initial=self.state.epoch, desc=f"train {key.dataset} seed {key.seed}",
            unit="epoch", disable=not self.show_progress,
        )
        while self.state.epoch < epochs:
            epoch = self.state.epoch
            if key.prunes and epoch == key.prune_epoch and self.state.kept is None:
                self._prune()
            active = (
                torch.from_numpy(self.state.kept).to(self.device)
                if self.state.kept is not None
                else torch.arange(n_train, device=self.device)
            )
            record = self._train_epoch(epoch, active, full_batches)
            record.update(self._monitor(epoch))
            record["weights_sha256"] = weights_sha256(self.model)
            self.state.history.append(record)
            self.state.epoch = epoch + 1
            save_checkpoint(self.resume_path, self._checkpoint(complete=False))
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", pgd=f"{record['pgd_acc']:.2f}")
            bar.update()
            self._log_epoch(record, epochs)
        bar.close()
        if stop_at is not None:
            return None
        return self._finish(n_train)

    def _log_epoch(self, record: dict[str, Any], epochs: int) -> None:
        """One line per epoch (shown where no progress bar is), and a warning when the PGD check drops enough to
        flag catastrophic overfitting (the drop rule of monitor.detect_collapse; its end-of-run floor comes last)."""
        _log.info(
            "epoch %d/%d: lr %.4g, loss %.4f, train acc %.3f, PGD acc %.3f, %d points, %.1f s",
            record["epoch"], epochs, record["lr"], record["train_loss"], record["train_acc"], record["pgd_acc"],
            record["n_points"], record["seconds"],
        )
        last_two = [row["pgd_acc"] for row in self.state.history[-2:]]
        drop = self.settings.monitor.collapse_drop
        if detect_collapse(last_two, drop=drop, floor=-math.inf) is not None:  # the drop rule alone
            _log.warning(
                "collapse: PGD accuracy fell from %.3f to %.3f at epoch %d (by more than %g): catastrophic overfitting",
                *last_two, record["epoch"], drop,
            )

    def _train_epoch(self, epoch: int, active: torch.Tensor, full_batches: int) -> dict[str, Any]:
        s = self.settings
        batch_size = s.batch_size
        attack = TRAINING_ATTACKS[s.training_attack]
        order = active[torch.randperm(len(active), generator=self.generator, device=self.device)]
        batches = -(-len(order) // batch_size)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        losses = torch.zeros(batches, device=self.device)  # per step, checked once per epoch: no sync per step
        self._sync()
        start = time.perf_counter()
        lr = 0.0
        for batch in range(batches):
            index = order[batch * batch_size : (batch + 1) * batch_size]
            x = self.images[index].float() / 255
            x = augment(x, crop_padding=s.crop_padding, horizontal_flip=s.horizontal_flip, generator=self.generator)
            y = self.labels[index]
            scale = schedule_scale(
                progress(
                    s.schedule_after_pruning, lr_at=s.lr_at, epoch=epoch, batch=batch, batches_in_epoch=batches,
                    step=self.state.step, epochs=s.epochs, full_batches_per_epoch=full_batches,
                ),
                peak_fraction=s.lr_peak_fraction,
            )
            lr = s.lr_max * scale
            for group in self.optimizer.param_groups:
                group["lr"] = lr
                if s.optimizer == "sgd":  # Adam keeps its betas, as the MNIST reference does
                    group["momentum"] = cycled_momentum(scale, at_ends=s.momentum, at_peak=s.momentum_at_peak)
            with self.autocast:
                x = attack(
                    self.model, x, y, eps=s.eps, alpha=s.alpha, clip_random_start=s.clip_random_start,
                    generator=self.generator,
                )
                output = self.model(x)
                loss = F.cross_entropy(output, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.state.step += 1
            loss_sum += loss.detach().float() * len(y)
            losses[batch] = loss.detach().float()
            correct += (output.detach().argmax(dim=1) == y).sum()
        self._sync()
        seconds = time.perf_counter() - start
        self.state.train_seconds += seconds
        check_finite(losses, self.model, epoch=epoch, steps_done=self.state.step)
        return {
            "epoch": epoch + 1,
            "train_loss": loss_sum.item() / len(order),
            "train_acc": correct.item() / len(order),
            "lr": lr,
            "n_points": len(order),
            "seconds": seconds,
        }

    def _prune(self) -> None:
        s, key = self.settings, self.key
        n_train = len(self.labels)
        self._sync()
        start = time.perf_counter()
        if key.strategy in NEEDS_SCORES:
            scores = score_points(
                self.model, self.images, self.labels, eps=s.eps, alpha=s.alpha,
                clip_random_start=s.clip_random_start, batch_size=s.score_batch_size,
                generator=self.generator, autocast=self.autocast,
            ).numpy()
        else:
            scores = np.full(n_train, np.nan, dtype=np.float32)
        self.state.kept = kept_indices(scores, key.keep, key.strategy, seed=key.seed)
        self.state.scores = scores.astype(np.float32)
        self._sync()
        seconds = time.perf_counter() - start
        if key.strategy in NEEDS_SCORES:  # a run that scores nothing (random) has no scoring time
            self.state.scoring_seconds += seconds
        _log.info(
            "pruned after epoch %d: %s keeps %d of %d points (keep %g), %.1f s",
            self.state.epoch, key.strategy, len(self.state.kept), n_train, key.keep, seconds,
        )

    def _monitor(self, epoch: int) -> dict[str, Any]:
        start = time.perf_counter()
        # Its own generator: monitoring must not change the training's random stream.
        generator = torch.Generator(device=self.device).manual_seed(self.key.seed * 1_000 + epoch)
        with self.autocast:
            accuracy = pgd_accuracy(
                self.model, self.monitor_x, self.monitor_y, eps=self.settings.eps,
                settings=self.settings.monitor, generator=generator,
            ).item()
        self.state.monitor_seconds += time.perf_counter() - start
        return {"pgd_acc": accuracy}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- outputs --------------------------------------------------------------------------------------------------
    def _finish(self, n_train: int) -> dict[str, Any]:
        state = self.state
        kept = state.kept if state.kept is not None else np.arange(n_train)
        scores = state.scores if state.scores is not None else np.full(n_train, np.nan, dtype=np.float32)
        pgd = [record["pgd_acc"] for record in state.history]
        monitor = self.settings.monitor
        collapse_epoch = detect_collapse(pgd, drop=monitor.collapse_drop, floor=monitor.collapse_floor)
        summary = train_record(
            self.key, self.settings.as_dict(), state, n_train=n_train, n_kept=int(len(kept)),
            collapse_epoch=collapse_epoch, device=device_name(self.device), jobs_on_device=self.jobs_on_device,
            dataset_sha256=self.dataset_sha256, gpu=self.gpu,
        )
        write_results(self.out_dir, scores=scores, kept=kept, model=self._checkpoint(complete=True), record=summary)
        self.resume_path.unlink(missing_ok=True)
        if collapse_epoch is not None:
            _log.warning("collapsed at epoch %d (final PGD acc %.3f): train.json flags it", collapse_epoch, pgd[-1])
        _log.info(
            "finished: %d of %d points kept, %.1f s training + %.1f s scoring, final PGD acc %.3f",
            len(kept), n_train, state.train_seconds, state.scoring_seconds, pgd[-1],
        )
        return summary
