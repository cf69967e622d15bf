"""Standard AutoAttack (L-inf) over `pyautoattack`, run one attack at a time so that a killed evaluation resumes, with
the numbers pyautoattack only logs made available.

The four attacks run as four calls, each on the points still robust, as one `run_standard_evaluation` would run them;
after each, the state (fingerprinted by model, points and settings) is saved so that a run started again continues
after the last finished attack. pyautoattack returns `(x_adv, y_adv)` and reports everything else (per-attack
accuracy, its sanity checks) on the 'auto-attack' logger at DEBUG/WARNING: this module captures that logger, parses
the per-attack accuracies, computes the headline numbers itself from the model's predictions on `x` and `x_adv`, and
checks that every adversarial example stays in the eps-ball and the image box.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from pyautoattack import AutoAttack, checks
from torch import nn

from advprune.checkpoint import save_tensors

AUTOATTACK_LOGGER = "auto-attack"
STANDARD_ATTACKS = ["apgd-ce", "apgd-t", "fab-t", "square"]

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
    resumed_seconds: float = 0.0  # part of `seconds` spent before this run continued from a saved state


class _Capture(logging.Handler):
    """Keep the records of one standard AutoAttack run, and pass each on to this module's logger.

    The adapter runs the four attacks as four calls of pyautoattack, each on the points still robust. Each call repeats
    pyautoattack's preamble (version line, model checks, 'initial accuracy' of its subset) and epilogue (its
    'robust accuracy after' line as a fraction of the subset, the Square check, the final perturbation line); in the
    'call' phase those are dropped, and the adapter logs the run's own versions once, in the 'keep' phase.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []  # (level, message)
        self.phase = "keep"  # keep | preamble (of a call) | attack | epilogue

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.phase == "preamble":
            if _INITIAL.match(message):
                self.phase = "attack"
            return
        if self.phase == "attack" and (_AFTER.match(message) or message.startswith(_NONE_LEFT)):
            self.phase = "epilogue"
        if self.phase == "epilogue":
            return
        self.records.append((record.levelno, message))
        _log.log(record.levelno, "AutoAttack: %s", message)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Predicted labels (on `device`) for images `x`, in batches."""
    return torch.cat([model(x[i : i + batch_size].to(device)).argmax(1) for i in range(0, len(x), batch_size)])


def _sha256(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _fingerprint(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int, batch_size: int
) -> dict[str, Any]:
    """What a saved state must match to be continued: the same points, model, attacks and every setting of them.

    The batch size is part of it because pyautoattack reseeds each attack per batch (other batches, other results).
    """
    state = model.state_dict()
    return {
        "x_sha256": _sha256(x),
        "y_sha256": _sha256(y),
        "model_sha256": _sha256(*(state[name] for name in sorted(state))),
        "eps": float(eps),
        "seed": int(seed),
        "n": len(y),
        "batch_size": int(batch_size),
        "attacks": list(STANDARD_ATTACKS),
        "norm": "Linf",
        "version": "standard",
    }


def _load_state(state_path: Path, fingerprint: dict[str, Any]) -> dict[str, Any]:
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is refused the same way
        raise ValueError(
            f"{state_path}: cannot read this AutoAttack state file ({error}); delete it to start the evaluation afresh"
        ) from None
    saved = state.get("fingerprint") if isinstance(state, dict) else None
    if saved != fingerprint:
        differ = sorted(k for k in fingerprint if not isinstance(saved, dict) or saved.get(k) != fingerprint[k])
        raise ValueError(
            f"{state_path}: this AutoAttack state belongs to another evaluation (it differs in: "
            f"{', '.join(differ) or 'its format'}); it is never reused for other inputs. Delete it to start afresh."
        )
    return state


@dataclass
class _Progress:
    """The evaluation so far, in one place: every attack reads and extends it, and the state file saves it."""

    robust: torch.Tensor  # [N] bool: correct and not yet broken by any attack
    x_adv: torch.Tensor  # x, with each broken point replaced by the adversarial example that broke it
    after: dict[str, float]  # robust accuracy after each attack done
    done: list[str]  # attacks done, in order
    prior_seconds: float  # spent before this run continued from a saved state
    start: float  # time.perf_counter() when this run started

    def seconds(self) -> float:
        """Seconds of the whole evaluation so far, the part before a resume included."""
        return self.prior_seconds + time.perf_counter() - self.start


def run_autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    device: torch.device,
    batch_size: int,
    seed: int = 0,
    state_path: Path | None = None,
    keep_state: bool = False,
) -> AutoAttackResult:
    """Standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square), L-inf at `eps`, on images `x` in [0, 1] [N, C, H, W].

    The model is put in eval mode. Raises if an adversarial example leaves the eps-ball or the image box.

    The attacks run one at a time, each on the points still robust, with the standard version's parameters: the same
    attacks on the same batches with the same seeds as one `run_standard_evaluation`. With `state_path`, the state
    after each attack is saved there (atomically); a run started again with the same model, points and settings
    continues after the last finished attack, and a state of anything else is refused (ValueError). The state file is
    deleted when the evaluation completes, unless `keep_state`: then the caller deletes it once it has stored the
    result (a kill before that must not lose the attacks).
    """
    _check_images(x, y)
    # pyautoattack's gradient checks use `.view`, which fails on non-contiguous tensors (e.g. permuted HWC storage).
    x, y = x.to(device).contiguous(), y.to(device=device, dtype=torch.long)
    model.eval()
    n = len(y)
    start = time.perf_counter()
    fingerprint = _fingerprint(model, x, y, eps, seed, batch_size)
    state = _state_to_continue(state_path, fingerprint)
    with _capture_autoattack_log() as capture:
        attack = _standard_attack(model, eps, device, seed)
        clean_correct = predict(model, x, batch_size, device) == y
        if state is None:
            progress = _fresh_progress(attack, x, y, clean_correct, batch_size, start)
        else:
            progress = _restored_progress(state, x, device, capture, start)
        _run_remaining_attacks(attack, capture, progress, x, y, batch_size, state_path, fingerprint)
        _epilogue(attack, x, clean_correct, progress)
        seconds = progress.seconds()

    messages = [message for _, message in capture.records]
    warnings = [message for level, message in capture.records if level >= logging.WARNING]
    max_perturbation = _checked_max_perturbation(x, progress.x_adv, eps)
    robust_acc, disagreement = _recheck(model, progress.x_adv, y, progress.robust, batch_size, device)
    if disagreement is not None:
        warnings.append(disagreement)
        _log.warning("AutoAttack: %s", warnings[-1])

    after_all, run, skipped = _per_attack_accuracy(messages, STANDARD_ATTACKS, n)
    if state_path is not None and not keep_state:
        Path(state_path).unlink(missing_ok=True)
    return AutoAttackResult(
        clean_acc=clean_correct.sum().item() / n,
        robust_acc=robust_acc,
        robust_acc_after=after_all,
        attacks_run=run,
        attacks_skipped=skipped,
        seconds=seconds,
        warnings=warnings,
        log=messages,
        max_perturbation=max_perturbation,
        resumed_seconds=progress.prior_seconds,
    )


def _check_images(x: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse input pyautoattack would misread: eps is in the [0, 1] scale, and every image needs its label."""
    if x.ndim != 4 or not x.is_floating_point() or len(x) == 0 or len(x) != len(y):
        raise ValueError(f"expected float images [N, C, H, W] with N >= 1 and N labels; got {tuple(x.shape)}, {len(y)}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"images must lie in [0, 1] (got [{x.min():.3g}, {x.max():.3g}]); eps is in that scale")


def _state_to_continue(state_path: Path | None, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state of this very evaluation, if there is one, so that a restarted run skips the attacks done."""
    if state_path is None or not Path(state_path).exists():
        return None
    state = _load_state(Path(state_path), fingerprint)
    _log.info("AutoAttack: continuing %s after %s", state_path, ", ".join(state["attacks_done"]) or "no attack")
    return state


@contextmanager
def _capture_autoattack_log() -> Iterator[_Capture]:
    """Send pyautoattack's logger, at DEBUG, to a `_Capture` alone for one run, and leave the logger as found."""
    logger = logging.getLogger(AUTOATTACK_LOGGER)
    saved = logger.level, logger.handlers[:], logger.propagate
    capture = _Capture()
    logger.setLevel(logging.DEBUG)
    logger.handlers = [capture]
    # Records reach the user through `_Capture` only: propagating would send every DEBUG line to the root's handlers.
    logger.propagate = False
    try:
        yield capture
    finally:
        logger.setLevel(saved[0])
        logger.handlers = saved[1]
        logger.propagate = saved[2]


def _standard_attack(model: nn.Module, eps: float, device: torch.device, seed: int) -> AutoAttack:
    """pyautoattack's standard version, refused if its attacks are not the ones this adapter runs one by one."""
    attack = AutoAttack(model, norm="Linf", eps=eps, version="standard", device=device, seed=seed)
    if list(attack.attacks_to_run) != STANDARD_ATTACKS:
        raise RuntimeError(f"pyautoattack's standard version runs {attack.attacks_to_run}, not {STANDARD_ATTACKS}")
    return attack


def _fresh_progress(
    attack: AutoAttack, x: torch.Tensor, y: torch.Tensor, clean_correct: torch.Tensor, batch_size: int, start: float
) -> _Progress:
    """No attack done yet; pyautoattack's preamble is logged now, as one `run_standard_evaluation` logs it first."""
    progress = _Progress(clean_correct.clone(), x.clone(), {}, [], 0.0, start)
    _preamble(attack, x, y, batch_size, progress.robust.sum().item() / len(y))
    return progress


def _restored_progress(
    state: dict[str, Any], x: torch.Tensor, device: torch.device, capture: _Capture, start: float
) -> _Progress:
    """The progress of a saved state, its log included, so that the result reads as if the run had never stopped."""
    robust = state["robust"].to(device)
    x_adv = x.clone()
    x_adv[~robust] = state["x_adv_broken"].to(device=device, dtype=x.dtype)
    after, done = dict(state["robust_acc_after"]), list(state["attacks_done"])
    prior_seconds = float(state["seconds"])
    capture.records = [(int(level), str(m)) for level, m in zip(state["log_levels"], state["log"])]
    return _Progress(robust, x_adv, after, done, prior_seconds, start)


def _run_remaining_attacks(
    attack: AutoAttack,
    capture: _Capture,
    progress: _Progress,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    state_path: Path | None,
    fingerprint: dict[str, Any],
) -> None:
    """The attacks not done yet, in order, with the state saved after each, so that a killed run loses one at most."""
    for name in STANDARD_ATTACKS:
        if name in progress.done:
            continue
        if not progress.robust.any():  # as pyautoattack logs it; otherwise its call below logs 'running ...'
            _log_early_stop(attack, name, progress.done)
            break
        attack_start = time.perf_counter()
        _run_attack(attack, capture, name, progress, x, y, batch_size)
        seconds = progress.seconds()
        _log_attack_done(attack, name, progress, seconds, attack_start)
        if state_path is not None:
            _save_state(Path(state_path), fingerprint, progress.robust, progress.x_adv, progress.after, progress.done,
                        seconds, capture.records)


def _log_early_stop(attack: AutoAttack, name: str, done: list[str]) -> None:
    """Log the stop when no robust point is left in pyautoattack's words, which `_per_attack_accuracy` reads."""
    _log.info("AutoAttack: no robust point left, %s skipped", ", ".join(a for a in STANDARD_ATTACKS if a not in done))
    attack.logger.debug(f"running {name}")
    attack.logger.debug("no robust datapoints left, skipping remaining attacks")


def _run_attack(
    attack: AutoAttack,
    capture: _Capture,
    name: str,
    progress: _Progress,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
) -> None:
    """One attack as its own pyautoattack call on the points still robust, its preamble and epilogue left out."""
    index = torch.nonzero(progress.robust).reshape(-1)
    attack.attacks_to_run = [name]
    capture.phase = "preamble"
    try:
        x_sub, y_sub = attack.run_standard_evaluation(x[index], y[index], batch_size=batch_size)
    finally:
        capture.phase = "keep"
    broken = y_sub != y[index]  # y_sub is the prediction at x_sub for broken points, else the clean one
    progress.x_adv[index[broken]] = x_sub[broken].to(progress.x_adv.dtype)
    progress.robust[index[broken]] = False
    progress.after[name] = progress.robust.sum().item() / len(y)
    progress.done.append(name)


def _log_attack_done(attack: AutoAttack, name: str, progress: _Progress, seconds: float, attack_start: float) -> None:
    """Progress for the user, and the 'robust accuracy after' line of the whole run that one call would log."""
    n = len(progress.robust)
    _log.info("AutoAttack %s: robust accuracy %.2f%% (%d of %d points), %.1f s in it, %.1f s so far", name,
              100 * progress.after[name], progress.robust.sum().item(), n, time.perf_counter() - attack_start, seconds)
    attack.logger.debug(
        "robust accuracy after {}: {:.2%} (total time {:.1f} s)".format(name.upper(), progress.after[name], seconds)
    )


def _epilogue(attack: AutoAttack, x: torch.Tensor, clean_correct: torch.Tensor, progress: _Progress) -> None:
    """What `run_standard_evaluation` logs and checks after its last attack, once for the whole run."""
    n, x_adv = len(x), progress.x_adv
    attack.attacks_to_run = list(STANDARD_ATTACKS)
    checks.check_square_sr({"clean": clean_correct.sum().item() / n, **progress.after}, logger=attack.logger)
    res = (x_adv - x).abs().reshape(n, -1).max(1)[0]
    attack.logger.debug("max {} perturbation: {:.5f}, nan in tensor: {}, max: {:.5f}, min: {:.5f}".format(
        "Linf", res.max(), (x_adv != x_adv).sum(), x_adv.max(), x_adv.min()))
    attack.logger.debug("robust accuracy: {:.2%}".format(progress.robust.sum().item() / n))


def _checked_max_perturbation(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> float:
    """The L-inf norm of x_adv - x, once x_adv is proven to lie in the eps-ball and the image box (else no result)."""
    max_perturbation = (x_adv - x).abs().max().item()
    if max_perturbation > eps + 1e-6:
        raise RuntimeError(f"AutoAttack returned a perturbation of L-inf norm {max_perturbation:.6g} > eps = {eps:.6g}")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError("AutoAttack returned adversarial examples outside the image box [0, 1]")
    return max_perturbation


def _recheck(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, robust: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, str | None]:
    """Robust accuracy from the model's own predictions on x_adv, and a warning where they differ from AutoAttack's."""
    n = len(y)
    robust_correct = predict(model, x_adv, batch_size, device) == y
    robust_acc = robust_correct.sum().item() / n
    # `robust` is AutoAttack's verdict when it found each example. On a GPU, re-predicting in other batch compositions
    # can flip a point that sits on the decision boundary (FAB's minimal perturbations do); our re-check counts, and
    # the disagreement is reported rather than fatal.
    disagree = (robust_correct != robust).sum().item()
    if not disagree:
        return robust_acc, None
    return robust_acc, (
        f"{disagree} of {n} points are classified differently when x_adv is re-checked than when AutoAttack "
        f"found them (robust accuracy {robust_acc:.4f} from the re-check, "
        f"{robust.sum().item() / n:.4f} by AutoAttack)"
    )


def _preamble(attack: AutoAttack, x: torch.Tensor, y: torch.Tensor, batch_size: int, clean_acc: float) -> None:
    """What `run_standard_evaluation` logs and checks before its first attack, once for the whole run."""
    attack.logger.debug("using {} version including {}.".format(attack.version, ", ".join(attack.attacks_to_run)))
    x0, y0 = x[:batch_size].to(attack.device), y[:batch_size].to(attack.device)
    checks.check_randomized(attack.get_logits, x0, y0, bs=batch_size, logger=attack.logger)
    n_cls = checks.check_range_output(attack.get_logits, x0, logger=attack.logger)
    checks.check_dynamic(attack.model, x0, False, logger=attack.logger)
    checks.check_n_classes(n_cls, attack.attacks_to_run, attack.apgd_targeted.n_target_classes,
                           attack.fab.n_target_classes, logger=attack.logger)
    attack.logger.debug("initial accuracy: {:.2%}".format(clean_acc))


def _save_state(
    path: Path,
    fingerprint: dict[str, Any],
    robust: torch.Tensor,
    x_adv: torch.Tensor,
    after: dict[str, float],
    done: list[str],
    seconds: float,
    records: list[tuple[int, str]],
) -> None:
    """Plain tensors, lists and numbers only, so `torch.load(weights_only=True)` reads it back."""
    payload = {
        "fingerprint": fingerprint,
        "robust": robust.detach().to("cpu").clone(),
        "x_adv_broken": x_adv[~robust].detach().to("cpu").clone(),
        "robust_acc_after": dict(after),
        "attacks_done": list(done),
        "seconds": float(seconds),
        "log": [message for _, message in records],
        "log_levels": [int(level) for level, _ in records],
    }
    save_tensors(path, payload)


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
