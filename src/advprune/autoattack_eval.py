"""A thin adapter over `pyautoattack`: standard AutoAttack, L-inf, with the numbers it only logs made available.

pyautoattack returns `(x_adv, y_adv)` and reports everything else (per-attack accuracy, its sanity checks) on the
'auto-attack' logger at DEBUG/WARNING. This module captures that logger during a run, parses the per-attack
accuracies, and computes the headline numbers itself from the model's predictions on `x` and `x_adv`.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import torch
from pyautoattack import AutoAttack
from torch import nn

AUTOATTACK_LOGGER = "auto-attack"

_log = logging.getLogger(__name__)
_INITIAL = re.compile(r"^initial accuracy: ([0-9.]+)%")
_AFTER = re.compile(r"^robust accuracy after (\S+): ([0-9.]+)%")
_NONE_LEFT = "no robust datapoints left"


@dataclass
class AutoAttackResult:
    clean_acc: float  # on the attacked points
    robust_acc: float  # from the model's predictions on x_adv, not from AutoAttack's log
    robust_acc_after: dict[str, float]  # accuracy after each attack, in AutoAttack's order and spelling
    attacks_run: list[str]
    attacks_skipped: list[str]  # not run because no robust point was left; reported with the last accuracy
    seconds: float
    warnings: list[str]  # AutoAttack's own checks (records at WARNING or above) and the adapter's
    log: list[str]  # every message AutoAttack logged
    max_perturbation: float  # L-inf norm of x_adv - x over all points


class _Capture(logging.Handler):
    """Keep every record, and pass it on to this module's logger so the user's logging config decides what shows."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        _log.log(record.levelno, "AutoAttack: %s", record.getMessage())


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Predicted labels (on `device`) for images `x`, in batches."""
    return torch.cat([model(x[i : i + batch_size].to(device)).argmax(1) for i in range(0, len(x), batch_size)])


def run_autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    device: torch.device,
    batch_size: int,
    seed: int = 0,
) -> AutoAttackResult:
    """Standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), L-inf at `eps`, on images `x` in [0, 1] [N, C, H, W].

    The model is put in eval mode. Raises if an adversarial example leaves the eps-ball or the image box.
    """
    if x.ndim != 4 or not x.is_floating_point() or len(x) == 0 or len(x) != len(y):
        raise ValueError(f"expected float images [N, C, H, W] with N >= 1 and N labels; got {tuple(x.shape)}, {len(y)}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"images must lie in [0, 1] (got [{x.min():.3g}, {x.max():.3g}]); eps is in that scale")
    # pyautoattack's gradient checks use `.view`, which fails on non-contiguous tensors (e.g. permuted HWC storage).
    x, y = x.to(device).contiguous(), y.to(device=device, dtype=torch.long)
    model.eval()

    logger = logging.getLogger(AUTOATTACK_LOGGER)
    saved = logger.level, logger.handlers[:], logger.propagate
    capture = _Capture()
    logger.setLevel(logging.DEBUG)
    logger.handlers = [capture]
    # Records reach the user through `_Capture` only: propagating would send every DEBUG line to the root's handlers.
    logger.propagate = False
    try:
        start = time.perf_counter()
        attack = AutoAttack(model, norm="Linf", eps=eps, version="standard", device=device, seed=seed)
        x_adv, y_adv = attack.run_standard_evaluation(x, y, batch_size=batch_size)
        seconds = time.perf_counter() - start
    finally:
        logger.setLevel(saved[0])
        logger.handlers = saved[1]
        logger.propagate = saved[2]

    messages = [record.getMessage() for record in capture.records]
    warnings = [record.getMessage() for record in capture.records if record.levelno >= logging.WARNING]

    max_perturbation = (x_adv - x).abs().max().item()
    if max_perturbation > eps + 1e-6:
        raise RuntimeError(f"AutoAttack returned a perturbation of L-inf norm {max_perturbation:.6g} > eps = {eps:.6g}")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError("AutoAttack returned adversarial examples outside the image box [0, 1]")

    clean_correct = predict(model, x, batch_size, device) == y
    robust_correct = predict(model, x_adv, batch_size, device) == y
    robust_acc = robust_correct.sum().item() / len(y)
    # y_adv is AutoAttack's prediction when it found each example. On a GPU, re-predicting in other batch compositions
    # can flip a point that sits on the decision boundary (FAB's minimal perturbations do); our re-check counts, and
    # the disagreement is reported rather than fatal.
    disagree = (robust_correct != (y_adv == y)).sum().item()
    if disagree:
        warnings.append(
            f"{disagree} of {len(y)} points are classified differently when x_adv is re-checked than when AutoAttack "
            f"found them (robust accuracy {robust_acc:.4f} from the re-check, "
            f"{(y_adv == y).sum().item() / len(y):.4f} by AutoAttack)"
        )
        _log.warning("AutoAttack: %s", warnings[-1])

    after, run, skipped = _per_attack_accuracy(messages, attack.attacks_to_run, len(y))
    return AutoAttackResult(
        clean_acc=clean_correct.sum().item() / len(y),
        robust_acc=robust_acc,
        robust_acc_after=after,
        attacks_run=run,
        attacks_skipped=skipped,
        seconds=seconds,
        warnings=warnings,
        log=messages,
        max_perturbation=max_perturbation,
    )


def _per_attack_accuracy(
    messages: list[str], attacks: list[str], n: int
) -> tuple[dict[str, float], list[str], list[str]]:
    """Read 'robust accuracy after APGD-CE: 12.34%' lines; attacks skipped after an early stop keep the last value.

    The log prints a percentage to two decimals; rounding it to a whole number of points is exact for n <= 10000.
    """

    def fraction(percent: str) -> float:
        return round(float(percent) / 100 * n) / n

    last, after = None, {}
    for message in messages:
        if match := _INITIAL.match(message):
            last = fraction(match[1])
        elif match := _AFTER.match(message):
            last = after[match[1].lower()] = fraction(match[2])
    run = [name for name in attacks if name in after]
    skipped = [name for name in attacks if name not in after]
    if skipped and (last is None or not any(message.startswith(_NONE_LEFT) for message in messages)):
        raise RuntimeError(f"AutoAttack's log has no accuracy after {skipped}; has pyautoattack's log format changed?")
    return {name: after.get(name, last) for name in attacks}, run, skipped
