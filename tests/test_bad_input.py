"""Bad input never becomes a result (issue 18): non-finite settings, unverified data, damaged checkpoints, unwritable
or busy outputs. Every refusal is one line on stderr and exit code 2, never a traceback; a property test generates
command lines to hold the CLI to that.

Runs are in-process (`cli.main`) on the digits, one epoch each: a process per case would spend seconds importing torch.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis import strategies as st

from advprune import cli, datasets, settings
from advprune import plan
from advprune.checkpoint import FORMAT

REPO = Path(__file__).resolve().parents[1]
DATASET = "digits-mnist"
TINY = ["--set", "epochs=1", "--set", "monitor.n_points=16"]  # one epoch, a small monitoring batch: under a second


# -- helpers ----------------------------------------------------------------------------------------------------------
PROGRESS_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO advprune\.")  # runtime.LOG_FORMAT at INFO
@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        """stderr's lines, but the timestamped progress lines (INFO) of work done before a failure."""
        return [line for line in self.stderr.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]


def run_cli(*argv: str | Path) -> Result:
    """`python -m advprune ...` in-process: exit code, stdout, stderr (argparse's own exits included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(arg) for arg in argv])
        except SystemExit as exit_:  # argparse
            code = exit_.code
    return Result(code, out.getvalue(), err.getvalue())


def assert_refused(result: Result, *words: str) -> str:
    """Exit code 2 and exactly one line `advprune <command>: error: ...` naming every word; no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == 2, (result.code, result.stderr)
    assert len(result.lines) == 1, result.stderr
    line = result.lines[0]
    assert line.startswith("advprune") and ": error: " in line, line
    for word in words:
        assert word in line, (word, line)
    return line


def train_args(out: Path, data_root: Path, *extra: str, seed: int = 0) -> list[str]:
    return ["train", "--dataset", DATASET, "--keep", "1.0", "--seed", str(seed), "--out", str(out), "--data-root",
            str(data_root), "--device", "cpu", "--no-progress", *TINY, *extra]


def evaluate_args(checkpoint: Path, out: Path, data_root: Path, *extra: str) -> list[str]:
    return ["evaluate", "--checkpoint", str(checkpoint), "--out", str(out), "--data-root", str(data_root),
            "--n-examples", "2", "--device", "cpu", *extra]


class WorkStarted(AssertionError):
    """Raised by a stand-in for the expensive part of a command: the command got past its checks."""


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training and evaluation must not start: a refusal has to come before any work."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise WorkStarted("the command started working before refusing its input")

    monkeypatch.setattr("advprune.training.Trainer.__init__", refuse)
    monkeypatch.setattr("advprune.evaluation.evaluate_checkpoint", refuse)


@pytest.fixture(scope="module")
def finished(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run directory (model.pt, train.json, pruning.npz)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    result = run_cli(*train_args(out, data_root))
    assert result.code == 0, result.stderr
    return out


# -- 1. non-finite settings -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["eps", "lr_max", "alpha", "weight_decay", "momentum", "monitor.pgd_step_fraction"])
@pytest.mark.parametrize(("value", "spelled"), [(".nan", ".nan"), (".NaN", ".nan"), (".inf", ".inf"),
                                                ("-.inf", "-.inf"), ("1e999", ".inf")])
def test_a_non_finite_setting_is_refused_naming_it(key: str, value: str, spelled: str) -> None:
    with pytest.raises(ValueError, match=rf"^invalid setting {key}: {spelled} is not a finite number"):
        settings.resolve("digits-cifar", overrides=[f"{key}={value}"])


def test_a_non_finite_setting_in_a_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("digits-cifar:\n  normalization: {mean: [0.5], std: [.inf]}\n")
    with pytest.raises(ValueError, match=r"invalid setting normalization\.std\[0\]: \.inf is not a finite number"):
        settings.resolve("digits-cifar", config)


@pytest.mark.parametrize("key", ["eps", "lr_max", "alpha", "weight_decay"])
def test_train_refuses_a_nan_setting_before_training(key: str, data_root: Path, tmp_path: Path) -> None:
    """The issue's probe: `--set eps=.nan` trained two epochs of NaN loss into a 'finished' model."""
    out = tmp_path / "run"
    assert_refused(run_cli(*train_args(out, data_root, "--set", f"{key}=.nan")), key, ".nan")
    assert not out.exists() or not any(out.iterdir())


def test_a_diverging_training_stops_naming_epoch_and_step(data_root: Path, tmp_path: Path) -> None:
    """Finite settings can still diverge: the loss turns NaN in epoch 1 at lr_max 1e30; no model may come of it."""
    out = tmp_path / "run"
    line = assert_refused(run_cli(*train_args(out, data_root, "--set", "lr_max=1e30", "--set", "epochs=2")),
                          "epoch 1", "step", "not finite")
    assert "lr_max" in line  # what to look at
    assert not (out / "model.pt").exists() and not (out / "train.json").exists()


def _demo_config() -> dict[str, Any]:
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load((REPO / "profiles/demo/demo.yaml").read_text()))
    return config


def _check_workflow_config(config: dict[str, Any]) -> None:
    """What rules/common.smk runs when the workflow loads."""
    from snakemake.utils import validate

    validate(config, str(REPO / "schemas/config.schema.yaml"))
    plan.check_config(config)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("override_nan", ["training_overrides.digits-cifar", "eps", ".nan"]),
        ("keep_nan", ["artefacts.fig2.keep", ".nan"]),
        ("toy_inf", ["artefacts.toy.lr", ".inf"]),
        ("n_examples", ["n_examples", "1000", "360", "digits-mnist"]),
    ],
)
def test_the_workflow_refuses_bad_values_before_planning(case: str, words: list[str]) -> None:
    """Each was planned (and failed later as 'Missing input files' or in an evaluation job), or trained NaN models."""
    config = _demo_config()
    if case == "override_nan":
        config["training_overrides"] = {"digits-cifar": ["eps=.nan"]}
    elif case == "keep_nan":
        config["artefacts"]["fig2"]["keep"] = [float("nan")]
    elif case == "toy_inf":
        config["artefacts"]["toy"]["lr"] = float("inf")
    else:
        config["n_examples"] = 1000  # the digits have 360 test points
    with pytest.raises(ValueError) as error:
        _check_workflow_config(config)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


# -- 2. extracted MNIST files are verified ----------------------------------------------------------------------------
MNIST_TRAIN_IDX3_MD5 = "6bbc9ace898e44ae57da46a324031adb"  # the uncompressed original (shared/data/PROVENANCE.md)


def _mnist_raw(shared_dir: Path, root: Path) -> Path:
    source = shared_dir / "data" / "mnist-raw"
    if not source.is_dir():
        pytest.skip(f"{source} not found")
    raw = root / "MNIST" / "raw"
    shutil.copytree(source, raw)
    return raw


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the network: a download attempt fails at once, as it does on an offline machine."""
    import urllib.error
    import urllib.request

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_prepare_does_not_trust_extracted_mnist_files(shared_dir: Path, tmp_path: Path, offline: None) -> None:
    """The README's 'delete it and prepare again' path, after the extracted training images were damaged."""
    raw = _mnist_raw(shared_dir, tmp_path)
    for gz in raw.glob("*.gz"):  # what an earlier `prepare` leaves beside the gz files
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    _flip_byte(raw / "train-images-idx3-ubyte", 5000)

    result = run_cli("prepare", "--dataset", "mnist", "--root", tmp_path)
    if result.code == 0:  # it may read the verified gz files instead: then the data must be the original
        arrays = datasets.load_canonical(tmp_path / "mnist.npz", datasets.get_dataset("mnist"))
        idx3 = struct.pack(">IIII", 0x803, 60000, 28, 28) + arrays.x_train.tobytes()
        assert hashlib.md5(idx3).hexdigest() == MNIST_TRAIN_IDX3_MD5, "prepared from unverified data"
    else:
        assert_refused(result, "train-images-idx3-ubyte")


def test_a_corrupt_mnist_gz_without_a_source_is_named(shared_dir: Path, tmp_path: Path, offline: None) -> None:
    raw = _mnist_raw(shared_dir, tmp_path)
    _flip_byte(raw / "t10k-labels-idx1-ubyte.gz", 100)
    assert_refused(run_cli("prepare", "--dataset", "mnist", "--root", tmp_path), "t10k-labels-idx1-ubyte.gz", "MD5")
    assert not (tmp_path / "mnist.npz").exists()


def test_a_failed_download_is_one_line(tmp_path: Path, offline: None) -> None:
    assert_refused(run_cli("prepare", "--dataset", "mnist", "--root", tmp_path), "--source")
    assert_refused(run_cli("prepare", "--dataset", "cifar10", "--root", tmp_path), "--source")


# -- 3. one line, exit 2 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("device", ["bogus", "cuda:x", "cuda:-1", ""])
def test_a_malformed_device_is_one_line(command: str, device: str, data_root: Path, tmp_path: Path,
                                        no_work: None) -> None:
    if command == "train":
        args = train_args(tmp_path / "run", data_root, "--device", device)
    else:
        args = evaluate_args(tmp_path / "model.pt", tmp_path / "m.json", data_root, "--device", device)
    assert_refused(run_cli(*args), "device", repr(device))


def test_a_yaml_tag_in_an_override_is_one_line_and_runs_nothing(data_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    value = f"eps=!!python/object/apply:os.system ['touch {marker}']"
    assert_refused(run_cli(*train_args(tmp_path / "run", data_root, "--set", value)), "eps")
    assert_refused(run_cli("settings", "--dataset", DATASET, "--set", value), "eps")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("option", "value", "command"),
    [
        ("--batch-size", "0", "evaluate"),
        ("--batch-size", "-3", "evaluate"),
        ("--n-examples", "0", "evaluate"),
        ("--seed", "-1", "evaluate"),
        ("--jobs-on-device", "-5", "evaluate"),
        ("--jobs-on-device", "0", "train"),
        ("--jobs-on-device", "-5", "train"),
        ("--keep", "nan", "train"),
        ("--keep", "abc", "train"),
    ],
)
def test_an_out_of_range_option_is_one_line(option: str, value: str, command: str, data_root: Path, tmp_path: Path,
                                            no_work: None) -> None:
    if command == "train":
        args = train_args(tmp_path / "run", data_root, option, value)
    else:
        args = evaluate_args(tmp_path / "model.pt", tmp_path / "m.json", data_root, option, value)
    assert_refused(run_cli(*args), option)


def _damaged(checkpoint: dict[str, Any], path: str, how: str) -> None:
    """Delete the key at dotted `path`, or replace its value."""
    *parents, leaf = path.split(".")
    node = checkpoint
    for part in parents:
        node = node[part]
    if how == "delete":
        del node[leaf]
    else:
        node[leaf] = {"text": "0.1", "none": None, "list": [], "nan": float("nan"), "inf": float("inf"),
                      "zero": 0.0, "two": 2.0, "true": True, "int": 3}[how]


CHECKPOINT_DAMAGE = [
    ("dataset", "delete"), ("dataset", "int"), ("architecture", "delete"), ("architecture", "text"),
    ("architecture.name", "delete"), ("architecture.in_channels", "text"), ("architecture.in_channels", "true"),
    ("architecture.num_classes", "zero"), ("architecture.normalization", "list"), ("settings", "none"),
    ("settings.eps", "delete"), ("settings.eps", "text"), ("settings.eps", "nan"), ("settings.eps", "inf"),
    ("settings.eps", "zero"), ("settings.eps", "two"), ("settings.eps", "true"), ("run", "list"),
    ("run.seed", "delete"), ("dataset_sha256", "none"), ("complete", "delete"), ("complete", "text"),
    ("model_state", "delete"), ("model_state", "list"),
]


@pytest.mark.parametrize(("key", "how"), CHECKPOINT_DAMAGE)
def test_evaluate_refuses_a_damaged_checkpoint_naming_the_key(key: str, how: str, finished: Path, data_root: Path,
                                                              tmp_path: Path) -> None:
    checkpoint = torch.load(finished / "model.pt", weights_only=True)
    assert checkpoint["format"] == FORMAT
    _damaged(checkpoint, key, how)
    torch.save(checkpoint, tmp_path / "model.pt")
    out = tmp_path / "metrics.json"
    assert_refused(run_cli(*evaluate_args(tmp_path / "model.pt", out, data_root)), key.split(".")[-1])
    assert not out.exists()


def test_evaluate_refuses_weights_that_do_not_fit_the_architecture(finished: Path, data_root: Path,
                                                                   tmp_path: Path) -> None:
    checkpoint = torch.load(finished / "model.pt", weights_only=True)
    name = next(iter(checkpoint["model_state"]))
    checkpoint["model_state"][name] = torch.zeros(3)
    torch.save(checkpoint, tmp_path / "model.pt")
    assert_refused(run_cli(*evaluate_args(tmp_path / "model.pt", tmp_path / "m.json", data_root)), "model_state")


# -- 4. unwritable outputs are found before any work ------------------------------------------------------------------
@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize("where", ["the file", "below the file"])
def test_train_refuses_an_unwritable_out_before_any_work(where: str, a_file: Path, data_root: Path,
                                                         no_work: None) -> None:
    out = a_file if where == "the file" else a_file / "run"
    assert_refused(run_cli(*train_args(out, data_root)), "--out", str(out))
    assert a_file.read_text() == "not a directory\n"


@pytest.mark.parametrize("where", ["below the file", "a directory"])
def test_evaluate_refuses_an_unwritable_out_before_any_work(where: str, a_file: Path, finished: Path, data_root: Path,
                                                            tmp_path: Path, no_work: None) -> None:
    out = a_file / "metrics.json" if where == "below the file" else tmp_path
    assert_refused(run_cli(*evaluate_args(finished / "model.pt", out, data_root)), "--out", str(out))


def test_a_directory_that_refuses_writes_is_refused_before_any_work(tmp_path: Path, finished: Path, data_root: Path,
                                                                    no_work: None, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    """A read-only directory as root sees it (root writes anywhere): the probe file cannot be created."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("advprune.runtime.tempfile.TemporaryFile", refuse)
    assert_refused(run_cli(*train_args(tmp_path / "run", data_root)), "--out", "Permission denied")
    assert_refused(run_cli(*evaluate_args(finished / "model.pt", tmp_path / "m.json", data_root)), "--out",
                   "Permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_out_is_refused_before_any_work(tmp_path: Path, finished: Path, data_root: Path,
                                                    no_work: None) -> None:
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_refused(run_cli(*train_args(locked / "run", data_root)), "--out")
        assert_refused(run_cli(*evaluate_args(finished / "model.pt", locked / "m.json", data_root)), "--out")
    finally:
        locked.chmod(0o755)


# -- 5. a finished model is protected by its own `complete` flag ------------------------------------------------------
def test_a_complete_model_is_not_replaced_when_train_json_is_gone(finished: Path, data_root: Path,
                                                                  tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "train.json").unlink()
    before = (run / "model.pt").read_bytes()
    assert_refused(run_cli(*train_args(run, data_root, seed=1)), "model.pt", "--overwrite")
    assert (run / "model.pt").read_bytes() == before
    assert run_cli(*train_args(run, data_root, "--overwrite", seed=1)).code == 0  # on request it is replaced
    assert torch.load(run / "model.pt", weights_only=True)["run"]["seed"] == 1


def test_a_run_killed_while_finishing_still_completes(finished: Path, data_root: Path, tmp_path: Path) -> None:
    """Killed between writing model.pt and train.json: resume.pt (the last epoch's) is still there, and the same
    command finishes the run; another run is refused by resume.pt's own check."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "train.json").unlink()
    shutil.copyfile(run / "model.pt", run / "resume.pt")  # the last epoch's state: the run's identity, all epochs
    assert_refused(run_cli(*train_args(run, data_root, seed=1)), "resume.pt")
    result = run_cli(*train_args(run, data_root))
    assert result.code == 0, result.stderr
    assert (run / "train.json").exists() and not (run / "resume.pt").exists()


# -- 6. one run directory, one `train` at a time ----------------------------------------------------------------------
def test_a_second_train_into_a_busy_run_directory_is_refused(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = train_args(out, data_root, "--set", "epochs=200")
    first = subprocess.Popen([sys.executable, "-m", "advprune", *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "resume.pt").exists():  # the first run is training
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_refused(run_cli(*args), "another", str(out))
        assert first.poll() is None  # untouched, still training
    finally:
        first.kill()
        first.communicate()
    assert not (out / "model.pt").exists()


# -- 7. after Snakemake itself is killed: --unlock, then the same command resumes -------------------------------------
@pytest.mark.workflow
@pytest.mark.slow
def test_after_snakemake_is_killed_unlock_and_rerun_resumes(tmp_path: Path) -> None:
    from workflow_helpers import copy_workflow, snakemake, write_config_overlay

    directory = copy_workflow(tmp_path / "workflow")
    overlay = write_config_overlay(directory, {"training_overrides": {DATASET: ["epochs=40"]}})
    model = directory / "results/models" / DATASET / "fp32/full/seed0"
    command = [str(model.relative_to(directory) / "train.json"), "--profile", "profiles/demo",
               "--configfile", "profiles/demo/demo.yaml", str(overlay)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "snakemake", *command], cwd=directory, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (model / "resume.pt").exists():
        assert first.poll() is None, "Snakemake finished before the training could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # Snakemake and its job, as a lost session or the OOM killer would
    first.wait()

    locked = snakemake(directory, *command, env=env)
    assert locked.returncode != 0
    assert "LockException" in locked.stdout + locked.stderr and "--unlock" in locked.stdout + locked.stderr
    unlocked = snakemake(directory, *command, "--unlock", env=env)
    assert unlocked.returncode == 0, unlocked.stderr[-2000:]
    rerun = snakemake(directory, *command, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((model / "train.json").read_text())
    assert summary["resumed_at_epochs"] and len(summary["history"]) == 40


def test_the_readme_states_the_unlock_step_and_the_guarantees() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Interruptions, failures and bad input"):]
    section = section[:section.index("\n## ", 1)]
    for text in ("LockException", "--unlock", ".train.lock", "`complete` flag", ".nan", "naming the epoch and the step",
                 "Every error is one line", "MNIST/raw"):
        assert text in section, text
    # The commands shown are the test's sequence: unlock with the killed run's arguments, then the same command.
    assert ".venv/bin/snakemake --profile profiles/demo --unlock" in section


# -- the property: exit 0, or exit 2 with one line; never a traceback -------------------------------------------------
@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory, finished: Path) -> dict[str, Path]:
    """Paths the generated command lines draw from: good and bad files, directories and config files."""
    base = tmp_path_factory.mktemp("arena")
    (base / "a-file").write_text("x\n")
    (base / "empty").mkdir()
    (base / "damaged-data").mkdir()
    for name in datasets.DATASETS:
        (base / "damaged-data" / f"{name}.npz").write_bytes(b"PK\x03\x04 truncated")
    (base / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    (base / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    configs = {
        "good.yaml": "common: {eps: 0.1}\n",
        "nan.yaml": "digits-mnist: {eps: .nan}\n",
        "tag.yaml": "common: !!python/object/apply:os.system ['true']\n",
        "unknown.yaml": "imagenet: {eps: 0.1}\n",
        "list.yaml": "- 1\n- 2\n",
        "broken.yaml": "common: {eps: [\n",
        "alias.yaml": "common: &a {monitor: *a}\n",
        "section.yaml": "common: 3\n",
    }
    for name, text in configs.items():
        (base / name).write_text(text)
    damaged = torch.load(finished / "model.pt", weights_only=True)
    del damaged["architecture"]
    torch.save(damaged, base / "damaged.pt")
    torch.save({"format": FORMAT}, base / "empty.pt")
    return {"base": base, "model": finished / "model.pt"}


# Each option draws a good value seven times in eight, so that many command lines get past argparse to the checks
# behind it; paths name the arena's files ("MODEL" is the finished checkpoint, "FRESH" a path not yet used).
BAD_PATHS = ["a-file", "a-file/below", "empty", "bad.npz", "binary.yaml", "damaged.pt", "empty.pt", "MODEL", ""]
CONFIGS = ["good.yaml", "nan.yaml", "tag.yaml", "unknown.yaml", "list.yaml", "broken.yaml", "alias.yaml",
           "section.yaml", "binary.yaml", "a-file/below", "missing.yaml", "empty"]
# Data roots never hold a dataset (so nothing trains or attacks); `prepare` writes into roots of its own.
DATA_ROOTS = ["empty", "missing/data", "damaged-data", "a-file", "a-file/below"]
PREPARE_ROOTS = ["prepared", "a-file", "a-file/below", "bad.npz", "FRESH"]
BAD_NUMBERS = ["-1", "-5", "1.5", "nan", "inf", "-inf", "1e999", "abc", "", "99999999999999999999", "0x10"]
SETTING_KEYS = ["eps", "alpha", "lr_max", "weight_decay", "momentum", "momentum_at_peak", "epochs", "batch_size",
                "model", "optimizer", "lr_at", "normalization", "normalization.mean", "monitor", "monitor.pgd_steps",
                "monitor.nothing", "nothing", "eps.x", "a..b", "", "training_attack", "precision", "crop_padding"]
GOOD_OVERRIDES = ["eps=0.1", "epochs=2", "monitor.pgd_steps=3", "lr_max=8/255", "alpha=1e-2", "batch_size=64",
                  "momentum_at_peak=null", "normalization={mean: [0.5], std: [0.25]}", "model=digits_net"]
SETTING_VALUES = [".nan", ".inf", "-.inf", "1e999", "0", "-1", "1", "0.5", "8/255", "1/0", "null", "true", "x",
                  "[1, 2]", "{a: 1}", "{mean: [0.5], std: [0]}", "2001-01-01", "'", "[", "!!binary aGk=",
                  "!!python/object/apply:os.system ['true']", "!!set {a: null}", "&a [*a]", "", "1e-300",
                  "99999999999999999999", "digits_mlp", "sgd"]


_FRESH = itertools.count()


def _path(arena: dict[str, Path], name: str) -> str:
    if name == "MODEL":
        return str(arena["model"])
    if name == "FRESH":
        return str(arena["base"] / "fresh" / str(next(_FRESH)))
    return str(arena["base"] / name) if name else ""


@st.composite
def command_lines(draw: st.DrawFn, arena: dict[str, Path]) -> list[str]:
    """A command and a random selection of its options, each with a value from a pool of good and bad ones."""
    def pick(good: list[str], bad: list[str]) -> str:
        return draw(st.sampled_from(good if draw(st.integers(0, 7)) or not bad else bad))

    def path(good: list[str], bad: list[str] = BAD_PATHS) -> str:
        return _path(arena, pick(good, bad))

    def number(good: list[str]) -> str:
        return pick(good, BAD_NUMBERS)

    dataset = lambda: pick(["digits-mnist", "digits-cifar", "mnist", "cifar10"], ["imagenet", "", "MNIST"])  # noqa
    device = lambda: pick(["cpu", "auto"], ["bogus", "cuda:x", "", "cuda:-1", "cpu:0"])  # noqa
    options: dict[str, dict[str, Callable[[], str]]] = {
        "train": {
            "--dataset": dataset, "--keep": lambda: number(["1.0", "0.5", "0.001"]), "--seed": lambda: number(["0"]),
            "--out": lambda: path(["FRESH"]), "--prune-epoch": lambda: number(["0", "1", "9"]),
            "--strategy": lambda: pick(["random", "low+high", "mean-distance"], ["median", ""]),
            "--config": lambda: path(CONFIGS, []), "--device": device, "--jobs-on-device": lambda: number(["1", "8"]),
            "--precision": lambda: pick(["fp32", "bf16"], ["fp16"]),
            "--schedule-after-pruning": lambda: pick(["rescale", "fixed"], ["x"]),
        },
        "evaluate": {
            "--checkpoint": lambda: path(["MODEL"], BAD_PATHS + ["empty.pt", "damaged.pt", "missing.pt"]),
            "--out": lambda: path(["FRESH"]), "--dataset": dataset, "--device": device,
            "--n-examples": lambda: number(["1", "100", "100000"]), "--batch-size": lambda: number(["1", "1000"]),
            "--seed": lambda: number(["0", "7"]), "--jobs-on-device": lambda: number(["1"]),
            "--model": lambda: pick(["digits_mlp"], ["x"]),
        },
        "settings": {"--dataset": dataset, "--config": lambda: path(CONFIGS, [])},
        "prepare": {"--dataset": dataset, "--source": lambda: path(["empty", "bad.npz", "a-file"], ["missing"])},
    }
    required = {"--dataset", "--keep", "--seed", "--out", "--checkpoint"}
    command = draw(st.sampled_from(sorted(options)))
    argv = [command]
    if command in ("train", "evaluate"):  # always given: the default (`data`) could hold a dataset
        argv += ["--data-root", _path(arena, draw(st.sampled_from(DATA_ROOTS)))]
    elif command == "prepare":
        argv += ["--root", path(PREPARE_ROOTS, [])]
    for option, value in options[command].items():
        if draw(st.integers(0, 19)) < (19 if option in required else 8):
            argv += [option, value()]
    if command in ("train", "settings"):
        for _ in range(draw(st.integers(0, 2))):
            bad = f"{draw(st.sampled_from(SETTING_KEYS))}={draw(st.sampled_from(SETTING_VALUES))}"
            argv += ["--set", pick(GOOD_OVERRIDES, [bad])]
    if command == "train":
        argv += ["--no-progress"]
    return argv


def test_the_cli_exits_0_or_2_with_one_line(arena: dict[str, Path], offline: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated command lines: exit 0, or exit 2 with exactly one line naming the problem; never a traceback.
    Nothing here trains or attacks: the generated data roots hold no dataset, so a valid `train` or `evaluate` stops
    at loading its data, after every check of its arguments (the tiny runs below cover what follows)."""
    monkeypatch.chdir(arena["base"])  # relative paths (`--out ''` is `.`) land in the scratch folder

    @hypothesis_settings(max_examples=300, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(command_lines(arena))
    def check(argv: list[str]) -> None:
        result = run_cli(*argv)
        if result.code != 0:
            assert_refused(result)

    check()


TRAIN_SETTINGS = ["eps=1", "eps=1e-300", "alpha=1e300", "lr_max=1e30", "lr_max=1e-300", "batch_size=2000",
                  "batch_size=99999999999999999999", "crop_padding=100", "horizontal_flip=false",
                  "normalization={mean: [0.5], std: [1e-300]}", "normalization={mean: [0.5, 0.5], std: [1, 1]}",
                  "normalization={mean: [0.5], std: [0.2]}", "model=digits_net", "model=mnist_net", "model=nope",
                  "optimizer=sgd", "momentum_at_peak=1", "lr_peak_fraction=1e-9", "monitor.pgd_steps=1",
                  "monitor.n_points=99999", "score_batch_size=1", "training_attack=none", "precision=bf16",
                  "lr_at=step_start", "epochs=2", "weight_decay=1e300", "monitor.collapse_floor=1"]


@st.composite
def training_runs(draw: st.DrawFn) -> list[str]:
    keep = draw(st.sampled_from(["1.0", "0.5", "1e-9", "0.999999"]))
    extra = ["--keep", keep, "--strategy", draw(st.sampled_from(["random", "low+high", "high", "mean-distance"])),
             "--prune-epoch", draw(st.sampled_from(["0", "1"]))]
    for item in draw(st.lists(st.sampled_from(TRAIN_SETTINGS), max_size=3, unique=True)):
        extra += ["--set", item]
    return extra


def test_tiny_trainings_with_generated_settings_finish_or_fail_in_one_line(data_root: Path, tmp_path: Path) -> None:
    """Real one- or two-epoch runs on the digits with edge-of-range settings."""
    runs = iter(range(10**6))

    @hypothesis_settings(max_examples=40, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(training_runs())
    def check(extra: list[str]) -> None:
        out = tmp_path / f"run{next(runs)}"
        args = train_args(out, data_root)
        del args[args.index("--keep"):args.index("--keep") + 2]
        result = run_cli(*args, *extra)
        if result.code == 0:
            assert json.loads((out / "train.json").read_text())["schema"] == "advprune.train/1"
        else:
            assert_refused(result)
            assert not (out / "model.pt").exists()

    check()
