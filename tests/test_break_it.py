"""Issue 25: the attacks of a hostile or careless user that got through, one test each (numbered as in the issue).

Nothing wrong may ever look finished: a file of the user's is never emptied through a symlink, metrics never pair with
a model they did not measure, a finished model survives every rerun, damaged state is refused, and every error is one
line (exit 2). Runs are in-process (`cli.main`) on the digits where they can be; the Snakemake case is `slow`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from advprune import gpu_slots
from test_bad_input import (  # noqa: F401 (finished and no_work are fixtures)
    WorkStarted, assert_refused, evaluate_args, finished, no_work, run_cli, train_args,
)

DATASET = "digits-mnist"


# -- 1, 2. a file of the user's is never emptied or appended to through a symlink -----------------------------------
@pytest.fixture
def victims(tmp_path: Path) -> dict[str, Path]:
    """Two files of the user's that an attacker points lock and log names at."""
    files = {name: tmp_path / f"victim-{name}" for name in ("lock", "log", "train-lock")}
    for path in files.values():
        path.write_text("keep\n")
    return files


def _fake_gpu_env(monkeypatch: pytest.MonkeyPatch, lock_dir: Path) -> None:
    monkeypatch.setenv(gpu_slots.FAKE_GPUS, "1")
    monkeypatch.setenv(gpu_slots.LOCK_DIR, str(lock_dir))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def test_1_gpu_lock_and_log_symlinks_are_refused_not_followed(victims: dict[str, Path], data_root: Path,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's command: picker.lock and slots.jsonl are symlinks to the user's files in the lock folder."""
    locks = tmp_path / "L"
    locks.mkdir(mode=0o700)
    (locks / "picker.lock").symlink_to(victims["lock"])
    (locks / "slots.jsonl").symlink_to(victims["log"])
    _fake_gpu_env(monkeypatch, locks)
    out = tmp_path / "o1"
    result = run_cli(*train_args(out, data_root))
    assert_refused(result, "picker.lock", "symbolic link")
    assert victims["lock"].read_text() == "keep\n" and victims["log"].read_text() == "keep\n"
    assert not (out / "model.pt").exists()


def test_1_the_slot_log_is_never_appended_through_a_symlink(victims: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    locks = tmp_path / "L"
    locks.mkdir(mode=0o700)
    (locks / "slots.jsonl").symlink_to(victims["log"])
    _fake_gpu_env(monkeypatch, locks)
    with pytest.raises(ValueError, match="slots.jsonl.*symbolic link"):
        with gpu_slots.claim(torch.device("cpu"), 1):
            pass
    assert victims["log"].read_text() == "keep\n"


@pytest.mark.parametrize("how", ["group-writable", "world-readable", "another owner", "a symlink"])
def test_1_a_lock_folder_that_is_not_private_is_refused(how: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    locks = tmp_path / "L"
    if how == "a symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        locks.symlink_to(tmp_path / "elsewhere")
    else:
        locks.mkdir(mode=0o700)
        locks.chmod({"group-writable": 0o770, "world-readable": 0o755, "another owner": 0o700}[how])
        if how == "another owner":
            if os.geteuid() != 0:
                pytest.skip("only root can give a folder to another user")
            os.chown(locks, 4242, 4242)
    _fake_gpu_env(monkeypatch, locks)
    with pytest.raises(ValueError, match=str(locks)) as error:
        with gpu_slots.claim(torch.device("cpu"), 1):
            pass
    assert "\n" not in str(error.value) and "private" in str(error.value)


def test_1_the_default_lock_folder_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat

    import torch

    monkeypatch.setattr(gpu_slots.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv(gpu_slots.LOCK_DIR, raising=False)
    monkeypatch.setenv(gpu_slots.FAKE_GPUS, "1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with gpu_slots.claim(torch.device("cpu"), 1):
        pass
    folder = gpu_slots.lock_dir()
    assert folder.parent == tmp_path
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()


def test_2_a_train_lock_symlink_is_refused_not_followed(victims: dict[str, Path], data_root: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "o2"
    out.mkdir()
    (out / ".train.lock").symlink_to(victims["train-lock"])
    assert_refused(run_cli(*train_args(out, data_root)), ".train.lock", "symbolic link")
    assert victims["train-lock"].read_text() == "keep\n"
    assert not (out / "model.pt").exists()


def test_2_the_pinned_filelock_does_not_follow_symlinks() -> None:
    """The library that torch (and formerly advprune) locks with: 3.20.1 opens lock files with O_NOFOLLOW
    (CVE-2025-68146), 3.20.3 its SoftFileLock too (CVE-2026-22701)."""
    from importlib import metadata

    requirements = (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
    pinned = next(line.split("==")[1] for line in requirements if line.startswith("filelock=="))
    assert tuple(map(int, pinned.split("."))) >= (3, 20, 3)
    assert tuple(map(int, metadata.version("filelock").split(".")[:3])) >= (3, 20, 3)


# -- 3. metrics name the checkpoint they measured, and every reader checks it ---------------------------------------
def write_metrics(run: Path, n: int = 2, **fields) -> Path:
    """A well-formed metrics file beside a run, as `evaluate` writes it (its numbers made up), with `fields` set."""
    import hashlib
    import json

    metrics = {
        "schema": "advprune.metrics/1", "dataset": DATASET, "n_examples": n, "n_test": 360, "clean_acc": 0.5,
        "clean_acc_subset": 0.5, "autoattack_acc": 0.5, "eval_seconds": 1.0, "attack_seconds": 0.5,
        "clean_seconds": 0.1, "eps": 0.12,
        "robust_acc_after": {"apgd-ce": 0.5, "apgd-t": 0.5, "fab-t": 0.5, "square": 0.5},
        "checkpoint_sha256": hashlib.sha256((run / "model.pt").read_bytes()).hexdigest(),
    }
    metrics.update(fields)
    path = run / f"autoattack-n{n}.json"
    path.write_text(json.dumps(metrics))
    return path


@pytest.fixture
def finished_run(finished: Path, tmp_path: Path) -> Path:
    """A private copy of test_bad_input's finished one-epoch run."""
    return _copy_run(finished, tmp_path / "run")


def test_3_collect_refuses_metrics_whose_checkpoint_sha256_is_another_model(finished_run: Path,
                                                                           tmp_path: Path) -> None:
    write_metrics(finished_run, checkpoint_sha256="0" * 64)
    table = tmp_path / "table.csv"
    assert_refused(run_cli("collect", finished_run, "--n-examples", "2", "--out", table), "checkpoint_sha256",
                   str(finished_run / "model.pt"))
    assert not table.exists()
    write_metrics(finished_run)  # the model's own sha256: collected
    assert run_cli("collect", finished_run, "--n-examples", "2", "--out", table).code == 0


@pytest.fixture(scope="module")
def evaluated(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run directory with its AutoAttack evaluation on 2 points (autoattack-n2.json)."""
    out = tmp_path_factory.mktemp("evaluated") / "run"
    assert run_cli(*train_args(out, data_root)).code == 0
    result = run_cli(*evaluate_args(out / "model.pt", out / "autoattack-n2.json", data_root))
    assert result.code == 0, result.stderr
    return out


def _copy_run(run: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(run, destination, ignore=shutil.ignore_patterns(".train.lock"))
    return destination


@pytest.mark.slow
def test_3_new_metrics_carry_the_checkpoint_sha256(evaluated: Path) -> None:
    import hashlib
    import json

    metrics = json.loads((evaluated / "autoattack-n2.json").read_text())
    assert metrics["checkpoint_sha256"] == hashlib.sha256((evaluated / "model.pt").read_bytes()).hexdigest()


@pytest.mark.slow
def test_3_collect_refuses_metrics_of_a_replaced_model(evaluated: Path, data_root: Path, tmp_path: Path) -> None:
    """The issue's sequence: a model is evaluated, another is trained over it with --overwrite, `collect` paired the
    new model's row with the old model's accuracies."""
    run = _copy_run(evaluated, tmp_path / "run")
    assert run_cli(*train_args(run, data_root, "--overwrite", seed=5)).code == 0
    table = tmp_path / "table.csv"
    assert_refused(run_cli("collect", run, "--n-examples", "2", "--out", table), "autoattack-n2.json",
                   "checkpoint_sha256", "model.pt")
    assert not table.exists()


@pytest.mark.slow
def test_3_metrics_written_before_checkpoint_sha256_existed_are_still_collected(evaluated: Path,
                                                                                tmp_path: Path) -> None:
    """The background MNIST run writes metrics without the field: they are accepted as they are (unchecked)."""
    import json

    run = _copy_run(evaluated, tmp_path / "run")
    metrics_file = run / "autoattack-n2.json"
    metrics = json.loads(metrics_file.read_text())
    del metrics["checkpoint_sha256"]
    metrics_file.write_text(json.dumps(metrics))
    table = tmp_path / "table.csv"
    result = run_cli("collect", run, "--n-examples", "2", "--out", table)
    assert result.code == 0, result.stderr
    assert table.exists()


# -- 4. no command writes over a finished run's own files -------------------------------------------------------------
@pytest.mark.parametrize("name", ["model.pt", "train.json", "pruning.npz"])
def test_4_evaluate_never_writes_over_a_runs_own_file(name: str, finished_run: Path, data_root: Path,
                                                      no_work: None) -> None:
    before = (finished_run / name).read_bytes()
    result = run_cli(*evaluate_args(finished_run / "model.pt", finished_run / name, data_root, "--overwrite"))
    assert_refused(result, "--out", name)
    assert (finished_run / name).read_bytes() == before


def test_4_evaluate_overwrites_only_a_metrics_file(finished_run: Path, data_root: Path, tmp_path: Path,
                                                   no_work: None) -> None:
    """--overwrite replaces earlier metrics, never another file (here the user's notes, or the checkpoint itself
    under another name)."""
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}\n')
    assert_refused(run_cli(*evaluate_args(finished_run / "model.pt", notes, data_root, "--overwrite")), "--out",
                   "not a metrics file")
    assert notes.read_text() == '{"mine": 1}\n'
    link = tmp_path / "metrics.json"
    link.symlink_to(finished_run / "model.pt")
    assert_refused(run_cli(*evaluate_args(finished_run / "model.pt", link, data_root, "--overwrite")), "--out")
    with pytest.raises(WorkStarted):  # earlier metrics are replaced on request
        run_cli(*evaluate_args(finished_run / "model.pt", write_metrics(finished_run), data_root, "--overwrite"))


# -- 5. a finished model survives any rerun ---------------------------------------------------------------------------
RESULTS = ("model.pt", "train.json", "pruning.npz")


@pytest.fixture
def workflow_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """`train` as the workflow's jobs run it (rules/common.smk exports this)."""
    from advprune.cli import WORKFLOW_JOB

    monkeypatch.setenv(WORKFLOW_JOB, "1")


def test_5_a_rerun_job_restores_the_outputs_snakemake_removed(finished_run: Path, data_root: Path,
                                                              workflow_job: None, no_work: None) -> None:
    """Snakemake removes a rerun job's declared outputs before it starts it (an orphaned job finished them after
    Snakemake was killed): the job restores the finished run from .finished/ and trains nothing."""
    before = {name: (finished_run / name).read_bytes() for name in RESULTS}
    for name in RESULTS:
        (finished_run / name).unlink()
    result = run_cli(*train_args(finished_run, data_root))
    assert result.code == 0, result.stderr
    assert "nothing to train" in result.stderr
    assert {name: (finished_run / name).read_bytes() for name in RESULTS} == before


def test_5_a_rerun_job_ends_without_work_on_the_finished_run_it_finds(finished_run: Path, data_root: Path,
                                                                     workflow_job: None, no_work: None) -> None:
    """By hand this is refused (a finished run is not trained again without --overwrite); a workflow job that
    failed here would let Snakemake remove the finished files, so it ends with success, touching nothing."""
    import shutil

    shutil.rmtree(finished_run / ".finished")  # finished before .finished/ existed: kept there now
    before = {name: (finished_run / name).read_bytes() for name in RESULTS}
    result = run_cli(*train_args(finished_run, data_root))
    assert result.code == 0, result.stderr
    assert {name: (finished_run / name).read_bytes() for name in RESULTS} == before
    assert all((finished_run / ".finished" / name).samefile(finished_run / name) for name in RESULTS)
    # Another run asked for in the same directory is still refused.
    assert_refused(run_cli(*train_args(finished_run, data_root, seed=1)), "finished run")


def test_5_a_rerun_job_waits_for_the_orphan_that_holds_the_run_directory(finished_run: Path, data_root: Path,
                                                                        workflow_job: None, no_work: None) -> None:
    import threading

    from advprune.locks import ExclusiveLock

    orphan = ExclusiveLock(finished_run / ".train.lock")
    assert orphan.try_acquire()
    threading.Timer(1.0, orphan.release).start()  # the orphan ends
    result = run_cli(*train_args(finished_run, data_root))
    assert result.code == 0, result.stderr
    assert "waiting for another" in result.stderr and "nothing to train" in result.stderr


def test_5_an_evaluation_held_by_another_process_is_refused_by_hand(evaluated: Path, data_root: Path, tmp_path: Path,
                                                                    no_work: None) -> None:
    from advprune.locks import ExclusiveLock

    run = _copy_run(evaluated, tmp_path / "run")
    (run / "autoattack-n2.json").unlink()
    other = ExclusiveLock(run / ".autoattack-n2.json.lock")
    assert other.try_acquire()
    try:
        assert_refused(run_cli(*evaluate_args(run / "model.pt", run / "autoattack-n2.json", data_root)),
                       "another `advprune evaluate` is writing", "autoattack-n2.json")
    finally:
        other.release()


@pytest.mark.parametrize("orphan_writes", ["these metrics", "nothing"])
def test_5_a_rerun_evaluation_job_waits_for_the_orphan_and_takes_what_it_finished(
    orphan_writes: str, evaluated: Path, data_root: Path, tmp_path: Path, workflow_job: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As for training: a job of a killed Snakemake that still evaluates holds the metrics file's lock; the rerun's
    job waits for it, then takes the metrics it wrote (no attack run twice), or evaluates where it wrote none."""
    import threading

    from advprune import evaluation
    from advprune.locks import ExclusiveLock

    run = _copy_run(evaluated, tmp_path / "run")
    metrics = run / "autoattack-n2.json"
    finished = metrics.read_bytes()
    metrics.unlink()  # Snakemake removed the job's output before starting it
    orphan = ExclusiveLock(run / ".autoattack-n2.json.lock")
    assert orphan.try_acquire()

    def orphan_ends() -> None:
        if orphan_writes == "these metrics":
            metrics.write_bytes(finished)
        orphan.release()

    threading.Timer(1.0, orphan_ends).start()
    evaluations = []
    real = evaluation.evaluate_checkpoint
    monkeypatch.setattr(evaluation, "evaluate_checkpoint", lambda *a, **k: evaluations.append(1) or real(*a, **k))
    result = run_cli(*evaluate_args(run / "model.pt", metrics, data_root))
    assert result.code == 0, result.stderr
    assert "waiting for another `advprune evaluate`" in result.stderr
    if orphan_writes == "these metrics":
        assert "nothing to evaluate" in result.stderr and not evaluations
        assert metrics.read_bytes() == finished
    else:
        assert evaluations == [1] and metrics.exists()


def test_5_by_hand_the_kept_copy_counts_as_finished(finished_run: Path, data_root: Path, no_work: None) -> None:
    for name in RESULTS:
        (finished_run / name).unlink()
    assert_refused(run_cli(*train_args(finished_run, data_root)), ".finished", "--overwrite")


# A plugin (config `plugins:`) that holds a training after each epoch while the file HOLD exists: the test decides
# when the job of a killed Snakemake finishes, on any machine. Only `train` jobs are held.
HOLD_PLUGIN = '''
import sys, time
from pathlib import Path

if sys.argv[1:2] == ["train"]:
    from advprune import training

    _save = training.save_checkpoint

    def _save_then_hold(path, payload):
        _save(path, payload)
        while Path({hold!r}).exists():
            time.sleep(0.1)

    training.save_checkpoint = _save_then_hold
'''


@pytest.mark.workflow
@pytest.mark.slow
def test_5_an_orphaned_training_survives_unlock_and_rerun(tmp_path: Path) -> None:
    """The issue's sequence with real Snakemake: Snakemake is SIGKILLed, its training job goes on (an orphan);
    `--unlock`, then the same command. (1) The orphan is still training when the rerun's job starts: the job waits for
    it instead of failing (which let Snakemake remove the files the orphan then finished) and ends without training.
    (2) The orphan has finished before the rerun: Snakemake removes its outputs (incomplete, to its records) before
    the job, which restores them from .finished/: the very files the orphan wrote."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from advprune.locks import ExclusiveLock
    from workflow_helpers import copy_workflow, snakemake, write_config_overlay

    directory = copy_workflow(tmp_path / "workflow")
    hold = tmp_path / "HOLD"
    plugin = tmp_path / "hold_plugin.py"
    plugin.write_text(HOLD_PLUGIN.format(hold=str(hold)))
    overlay = write_config_overlay(directory, {"plugins": [str(plugin)], "training_overrides": {DATASET: ["epochs=4"]}})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(seed: int) -> list[str]:
        target = f"results/models/{DATASET}/fp32/full/seed{seed}/train.json"
        return [target, "--profile", "profiles/demo", "--configfile", "profiles/demo/demo.yaml", str(overlay)]

    def start(seed: int) -> subprocess.Popen:
        # Output to a file, not a pipe: the job a killed Snakemake leaves running would hold a pipe open.
        with open(tmp_path / f"snakemake-seed{seed}.out", "a") as output:
            return subprocess.Popen([sys.executable, "-m", "snakemake", *command(seed)], cwd=directory, env=env,
                                    stdout=output, stderr=subprocess.STDOUT, start_new_session=True)

    def output_of(seed: int) -> str:
        return (tmp_path / f"snakemake-seed{seed}.out").read_text()[-3000:]

    def busy(model: Path) -> bool:
        lock = ExclusiveLock(model / ".train.lock")
        if lock.try_acquire():
            lock.release()
            return False
        return True

    def orphan(seed: int) -> tuple[Path, int]:
        """Snakemake trains model `seed` and is SIGKILLed after its first epoch; its job goes on, held."""
        hold.touch()
        model = directory / f"results/models/{DATASET}/fp32/full/seed{seed}"
        first = start(seed)
        deadline = time.monotonic() + 300
        while not (model / "resume.pt").exists():
            assert first.poll() is None, output_of(seed)
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(first.pid, signal.SIGKILL)  # Snakemake alone: its job is left running
        first.wait()
        unlocked = snakemake(directory, *command(seed), "--unlock", env=env)
        assert unlocked.returncode == 0, unlocked.stderr[-2000:]
        return model, first.pid

    def log_of(seed: int) -> str:
        path = directory / f"logs/train_model/{DATASET}/fp32/full/seed{seed}.log"
        return path.read_text() if path.exists() else ""

    groups = []
    try:
        # (1) the orphan still trains while the rerun's job starts
        model, group = orphan(0)
        groups.append(group)
        rerun = start(0)
        deadline = time.monotonic() + 300
        while "waiting for another" not in log_of(0):
            assert rerun.poll() is None, (output_of(0), log_of(0))
            assert time.monotonic() < deadline
            time.sleep(0.1)
        hold.unlink()  # the orphan finishes
        assert rerun.wait(timeout=300) == 0, output_of(0)
        assert "nothing to train" in log_of(0) and "epoch 1/4" not in log_of(0), log_of(0)
        summary = json.loads((model / "train.json").read_text())
        assert len(summary["history"]) == 4 and summary["resumed_at_epochs"] == []  # the orphan's, uninterrupted

        # (2) the orphan finished before the rerun
        model, group = orphan(1)
        groups.append(group)
        hold.unlink()
        deadline = time.monotonic() + 300
        while busy(model) or not (model / "train.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        finished = {name: (model / name).read_bytes() for name in RESULTS}
        rerun = snakemake(directory, *command(1), env=env)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        assert "restored" in log_of(1) and "epoch 1/4" not in log_of(1), log_of(1)
        assert {name: (model / name).read_bytes() for name in RESULTS} == finished
    finally:
        hold.unlink(missing_ok=True)
        for group in groups:  # any job still left of the Snakemakes this test started and killed
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- 6. resume state is validated like every other input --------------------------------------------------------------
PRUNED = ["--keep", "0.4", "--prune-epoch", "1", "--set", "epochs=3"]


class _Paused(Exception):
    """Stands in for a kill right after a resume.pt is written."""


@pytest.fixture(scope="module")
def paused(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keep-0.4 run (pruned after epoch 1 of 3) stopped after epoch 2: its resume.pt holds the kept set."""
    from advprune import training

    out = tmp_path_factory.mktemp("paused") / "run"
    args = train_args(out, data_root, *PRUNED)
    del args[args.index("--keep"):args.index("--keep") + 2]  # train_args' keep 1.0
    write = training.save_checkpoint

    def write_then_stop(path, payload):
        write(path, payload)
        if payload["state"]["epoch"] == 2:
            raise _Paused

    training.save_checkpoint = write_then_stop
    try:
        with pytest.raises(_Paused):
            run_cli(*args)
    finally:
        training.save_checkpoint = write
    return out


def _pruned_args(out: Path, data_root: Path) -> list[str]:
    args = train_args(out, data_root, *PRUNED)
    del args[args.index("--keep"):args.index("--keep") + 2]
    return args


def _damage(checkpoint: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = checkpoint
    for part in parents:
        node = node[part]
    node[leaf] = value(node[leaf]) if callable(value) else value


RESUME_DAMAGE = {
    "epoch 10^6": ("state.epoch", 10**6),
    "epoch -5": ("state.epoch", -5),
    "epoch 0": ("state.epoch", 0),
    "empty history": ("state.history", []),
    "history of strings": ("state.history", lambda h: ["x"] * len(h)),
    "step -1": ("state.step", -1),
    "kept out of range": ("state.kept", lambda kept: kept + 10**6),
    "kept repeated": ("state.kept", lambda kept: kept * 0),
    "kept missing after pruning": ("state.kept", None),
    "scores too short": ("state.scores", lambda scores: scores[:5]),
    "short generator state": ("rng.generator", lambda state: state[:10]),
    "short torch RNG state": ("rng.torch", lambda state: state[:10]),
    "NaN seconds": ("state.train_seconds", float("nan")),
    "resumed at a later epoch": ("state.resumed_at_epochs", [7]),
    "foreign optimizer state": ("optimizer_state", {"state": {}, "param_groups": []}),
}


@pytest.mark.parametrize("case", RESUME_DAMAGE)
def test_6_a_damaged_resume_state_is_refused_and_left_untouched(case: str, paused: Path, data_root: Path,
                                                                tmp_path: Path) -> None:
    """Each was resumed: epoch 10^6 (or -5) became a 'finished' model that was never pruned, the others tracebacks."""
    import torch

    key, value = RESUME_DAMAGE[case]
    run = _copy_run(paused, tmp_path / "run")
    checkpoint = torch.load(run / "resume.pt", weights_only=True)
    _damage(checkpoint, key, value)
    torch.save(checkpoint, run / "resume.pt")
    before = (run / "resume.pt").read_bytes()
    assert_refused(run_cli(*_pruned_args(run, data_root)), "resume.pt", key.split(".")[-1])
    assert (run / "resume.pt").read_bytes() == before
    assert not (run / "model.pt").exists() and not (run / "train.json").exists()


def test_6_an_undamaged_resume_state_still_resumes(paused: Path, data_root: Path, tmp_path: Path) -> None:
    import json

    run = _copy_run(paused, tmp_path / "run")
    result = run_cli(*_pruned_args(run, data_root))
    assert result.code == 0, result.stderr
    summary = json.loads((run / "train.json").read_text())
    assert summary["resumed_at_epochs"] == [2] and summary["n_kept"] == round(0.4 * summary["n_train"])


# -- 7. no usable-looking result from an unusable model or dataset ----------------------------------------------------
def _nan_weights(state: dict) -> dict:
    return {name: tensor * float("nan") if tensor.is_floating_point() else tensor for name, tensor in state.items()}


def test_7_a_model_with_nan_weights_is_not_evaluated(finished_run: Path, data_root: Path, tmp_path: Path) -> None:
    """It was: clean accuracy 0.1 and AutoAttack 0.0, as if measured."""
    import torch

    checkpoint = torch.load(finished_run / "model.pt", weights_only=True)
    checkpoint["model_state"] = _nan_weights(checkpoint["model_state"])
    torch.save(checkpoint, tmp_path / "model.pt")
    out = tmp_path / "metrics.json"
    assert_refused(run_cli(*evaluate_args(tmp_path / "model.pt", out, data_root)), "model_state", "not finite")
    assert not out.exists()


def test_7_a_resume_state_with_nan_weights_is_refused(paused: Path, data_root: Path, tmp_path: Path) -> None:
    import torch

    run = _copy_run(paused, tmp_path / "run")
    checkpoint = torch.load(run / "resume.pt", weights_only=True)
    checkpoint["model_state"] = _nan_weights(checkpoint["model_state"])
    torch.save(checkpoint, run / "resume.pt")
    assert_refused(run_cli(*_pruned_args(run, data_root)), "resume.pt", "model_state", "not finite")
    assert not (run / "model.pt").exists()


@pytest.fixture
def without_top_class(data_root: Path, tmp_path: Path) -> Path:
    """digits-mnist's canonical file with every 9 taken out of the training set."""
    import numpy as np

    from advprune import datasets

    arrays = datasets.load_canonical(data_root / f"{DATASET}.npz")
    keep = arrays.y_train != 9
    root = tmp_path / "data"
    root.mkdir()
    np.savez(root / f"{DATASET}.npz", x_train=arrays.x_train[keep], y_train=arrays.y_train[keep].astype(np.uint8),
             x_test=arrays.x_test, y_test=arrays.y_test.astype(np.uint8))
    return root


def test_7_a_training_set_without_a_class_is_refused(without_top_class: Path, tmp_path: Path) -> None:
    """It trained a 9-output model without a word (its output count was the largest label + 1)."""
    out = tmp_path / "run"
    assert_refused(run_cli(*train_args(out, without_top_class)), "y_train", "9")
    assert not (out / "model.pt").exists()


def test_7_a_model_with_fewer_outputs_than_classes_is_not_evaluated(finished_run: Path, data_root: Path,
                                                                   tmp_path: Path) -> None:
    """A checkpoint trained so before (9 outputs for 10 classes): evaluate failed with an IndexError in AutoAttack."""
    import torch

    from advprune.models import build_model

    checkpoint = torch.load(finished_run / "model.pt", weights_only=True)
    architecture = {**checkpoint["architecture"], "num_classes": 9}
    checkpoint["architecture"] = architecture
    checkpoint["model_state"] = build_model(**architecture).state_dict()
    torch.save(checkpoint, tmp_path / "model.pt")
    assert_refused(run_cli(*evaluate_args(tmp_path / "model.pt", tmp_path / "m.json", data_root)), "num_classes",
                   "10")


# -- 9. result JSON with impossible values is refused, naming the key -------------------------------------------------
RESULT_DAMAGE = {
    "keep -3": ("train.json", "keep", -3),  # of a pruned run (the full-data run's keep must be 1.0 anyway)
    "keep 0": ("train.json", "keep", 0),
    "infinite training seconds": ("train.json", "train_seconds", float("inf")),
    "negative scoring seconds": ("train.json", "scoring_seconds", -1.0),
    "more kept than trained": ("train.json", "n_kept", 10**6),
    "no training points": ("train.json", "n_train", 0),
    "infinite evaluation seconds": ("metrics", "eval_seconds", float("inf")),
    "robust above clean": ("metrics", "autoattack_acc", 0.9),
    "n_examples of another file": ("metrics", "n_examples", 100),
    "an attack above clean": ("metrics", "robust_acc_after", {"apgd-ce": 0.9, "apgd-t": 0.5, "fab-t": 0.5,
                                                              "square": 0.5}),
}


@pytest.mark.parametrize("case", RESULT_DAMAGE)
def test_9_collect_refuses_impossible_values(case: str, finished_run: Path, tmp_path: Path) -> None:
    """Each was collected (`Infinity` is valid to Python's json), and tables showed 'inf ± nan'."""
    import json

    where, key, value = RESULT_DAMAGE[case]
    metrics = write_metrics(finished_run)
    path = finished_run / "train.json" if where == "train.json" else metrics
    record = json.loads(path.read_text())
    record[key] = value
    if key == "keep":
        record.update(strategy="random", prune_epoch=0)
    path.write_text(json.dumps(record))  # inf is written as Infinity
    table = tmp_path / "table.csv"
    assert_refused(run_cli("collect", finished_run, "--n-examples", "2", "--out", table), path.name, key)
    assert not table.exists()


# -- 10. a kill between the last attack and the metrics write loses no attack ----------------------------------------
class _Killed(Exception):
    """Stands in for a kill at that moment."""


def test_10_the_attack_state_outlives_the_metrics_write(finished_run: Path, data_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The state file was deleted before the metrics were written: a kill in between reran all four attacks."""
    import torch

    from advprune import autoattack_eval, runtime

    checkpoint = torch.load(finished_run / "model.pt", weights_only=True)
    checkpoint["settings"]["eps"] = 1.0  # every point falls to the first attack: a fast evaluation
    torch.save(checkpoint, tmp_path / "model.pt")
    out = tmp_path / "metrics.json"
    state = tmp_path / "metrics.json.partial.pt"
    write_json = runtime.write_json

    def killed(path, payload):
        if Path(path) == out:
            raise _Killed
        write_json(path, payload)

    monkeypatch.setattr(runtime, "write_json", killed)
    with pytest.raises(_Killed):
        run_cli(*evaluate_args(tmp_path / "model.pt", out, data_root))
    assert state.exists() and not out.exists()

    monkeypatch.setattr(runtime, "write_json", write_json)

    def no_attack(*args, **kwargs):
        raise AssertionError("an attack ran again")

    monkeypatch.setattr(autoattack_eval, "_run_attack", no_attack)
    result = run_cli(*evaluate_args(tmp_path / "model.pt", out, data_root))
    assert result.code == 0, result.stderr
    assert out.exists() and not state.exists()


# -- 8. every config key and value is checked before any job starts, naming the key ---------------------------------
def _bad_workflow_config(case: str) -> dict:
    from test_bad_input import _demo_config

    config = _demo_config()
    if case == "misspelt override dataset":
        config["training_overrides"] = {"digits_mnist": ["epochs=2"]}
    elif case == "misspelt resources dataset":
        config["job_resources"]["digits_mnist"] = {"train_model": {"runtime": 2}}
    elif case == "tiny keep":
        config["artefacts"]["fig2"]["keep"] = [0.00001, 1.0]
    elif case == "tiny pruned keep":
        config["artefacts"]["fig8"]["pruned_model"]["keep"] = 0.00001
    elif case == "wildcard in data_root":
        config["data_root"] = "data/{x}"
    elif case == "empty data_root":
        config["data_root"] = ""
    elif case == "unknown model":
        config["training_overrides"] = {"digits-mnist": ["model=resnet18"]}
    return config


CONFIG_CASES = {
    "misspelt override dataset": ["training_overrides.digits_mnist", "digits-mnist"],  # was ignored without a word
    "misspelt resources dataset": ["job_resources.digits_mnist", "digits-mnist"],
    "tiny keep": ["artefacts.fig2.keep", "1e-05"],  # planned a path that no rule's wildcard matches
    "tiny pruned keep": ["artefacts.fig8.pruned_model.keep", "1e-05"],
    "wildcard in data_root": ["data_root", "{x}"],  # broke the DAG
    "empty data_root": ["data_root"],
    "unknown model": ["training_overrides.digits-mnist", "model", "resnet18"],  # failed in the first job
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_8_the_workflow_refuses_a_bad_config_naming_the_key(case: str) -> None:
    from test_bad_input import _check_workflow_config

    with pytest.raises(ValueError) as error:
        _check_workflow_config(_bad_workflow_config(case))
    message = str(error.value)
    assert "\n" not in message
    for word in CONFIG_CASES[case]:
        assert word in message, (word, message)


def test_8_the_settings_schema_names_every_model() -> None:
    """`model` is checked against the registry when the config is read (the schema's list is the registry's)."""
    import yaml

    from advprune.models import MODELS

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "src/advprune/settings.schema.yaml").read_text())
    assert sorted(schema["properties"]["model"]["enum"]) == sorted(MODELS)


# -- 11. a full disk is one line naming the file, and loses nothing finished -----------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs of the size asked for (root only): a real full disk. Unmounted afterwards."""
    import subprocess

    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (the simulated ENOSPC tests run everywhere)")
        point = tmp_path / f"disk-{size}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:  # lazily if a failed test's traceback still holds a file open there
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], check=False)


def _fast_checkpoint(finished_run: Path, tmp_path: Path) -> Path:
    """The finished model at eps 1.0: every point falls to the first attack, so an evaluation takes seconds."""
    import torch

    checkpoint = torch.load(finished_run / "model.pt", weights_only=True)
    checkpoint["settings"]["eps"] = 1.0
    torch.save(checkpoint, tmp_path / "model.pt")
    return tmp_path / "model.pt"


def test_11_train_on_a_full_disk_is_one_line_and_resumes(small_disk, data_root: Path) -> None:
    """The issue's tmpfs of 1600K: epoch 1's resume.pt (about 1 MB) fits, epoch 2's does not. torch.save raised a
    RuntimeError ('unexpected pos'), a traceback."""
    import subprocess

    import torch

    disk = small_disk("1600k")
    out = disk / "run"
    args = train_args(out, data_root, "--set", "epochs=2")
    line = assert_refused(run_cli(*args), str(out / "resume.pt"), "nothing finished was lost")
    assert "free" in line
    assert torch.load(out / "resume.pt", weights_only=True)["state"]["epoch"] == 1  # the last one written, intact
    assert not (out / "model.pt").exists()
    subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)  # space freed
    result = run_cli(*args)
    assert result.code == 0, result.stderr
    assert "resuming" in result.stderr and (out / "train.json").exists()


def test_11_evaluate_on_a_full_disk_is_one_line(small_disk, finished_run: Path, data_root: Path,
                                               tmp_path: Path) -> None:
    disk = small_disk("4k")
    out = disk / "metrics.json"
    line = assert_refused(run_cli(*evaluate_args(_fast_checkpoint(finished_run, tmp_path), out, data_root)),
                          "cannot write", "nothing finished was lost")
    assert str(disk) in line and not out.exists()


def test_11_a_full_disk_simulated_is_one_line(finished_run: Path, data_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The same without root: every file write fails as on a full disk (torch.save with the RuntimeError it raised
    on the tmpfs, plain writes with ENOSPC)."""
    import errno

    import torch

    from advprune import checkpoint as checkpoint_module

    def torch_save_on_a_full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 479744 vs 479636")

    monkeypatch.setattr(checkpoint_module.torch, "save", torch_save_on_a_full_disk)
    out = tmp_path / "new-run"
    assert_refused(run_cli(*train_args(out, data_root)), str(out / "resume.pt"), "nothing finished was lost")

    monkeypatch.undo()
    model = _fast_checkpoint(finished_run, tmp_path)
    real_write_text = Path.write_text

    def write_text_on_a_full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", write_text_on_a_full_disk)
    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    metrics = tmp_path / "metrics.json"
    assert_refused(run_cli(*evaluate_args(model, metrics, data_root)), "cannot write", "nothing finished was lost")
    assert not metrics.exists()
    monkeypatch.setattr(Path, "write_text", real_write_text)


# -- the property "exit 0, or exit 2 with one line" over the new inputs: result JSON, resume state, full disks --------
BAD_VALUES = [None, -1, 0, 0.5, 2, 10**30, -(10**30), float("inf"), float("-inf"), float("nan"), "x", "", [], {},
              [1], {"a": 1}, True, False]


def test_collect_with_generated_result_files_exits_0_or_2_with_one_line(finished_run: Path, tmp_path: Path) -> None:
    import json

    from hypothesis import HealthCheck, given, settings as hypothesis_settings
    from hypothesis import strategies as st

    metrics_path = write_metrics(finished_run)
    originals = {path: path.read_text() for path in (finished_run / "train.json", metrics_path)}

    @hypothesis_settings(max_examples=200, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.data())
    def check(data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(originals)))
        record = json.loads(originals[path])
        if data.draw(st.integers(0, 9)) == 0:
            text = originals[path][: data.draw(st.integers(0, len(originals[path]) - 1))]  # truncated
        else:
            key = data.draw(st.sampled_from(sorted(record)))
            if data.draw(st.booleans()):
                del record[key]
            else:
                record[key] = data.draw(st.sampled_from(BAD_VALUES))
            text = json.dumps(record)
        try:
            path.write_text(text)
            result = run_cli("collect", finished_run, "--n-examples", "2", "--out", tmp_path / "table.csv")
            if result.code != 0:
                assert_refused(result)
        finally:
            path.write_text(originals[path])

    check()


def test_train_with_generated_resume_states_exits_0_or_2_with_one_line(paused: Path, data_root: Path,
                                                                      tmp_path: Path) -> None:
    import itertools

    import torch
    from hypothesis import HealthCheck, given, settings as hypothesis_settings
    from hypothesis import strategies as st

    saved = torch.load(paused / "resume.pt", weights_only=True)
    keys = [f"state.{key}" for key in saved["state"]] + ["rng.generator", "rng.torch", "optimizer_state",
                                                          "model_state", "settings", "run", "architecture"]
    values = BAD_VALUES + [torch.zeros(3), torch.zeros(0, dtype=torch.long), torch.full((5,), -1),
                           torch.tensor([float("nan")])]
    runs = itertools.count()

    @hypothesis_settings(max_examples=40, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(keys), st.sampled_from(values))
    def check(key: str, value) -> None:
        run = _copy_run(paused, tmp_path / f"run{next(runs)}")
        checkpoint = torch.load(run / "resume.pt", weights_only=True)
        _damage(checkpoint, key, value)
        torch.save(checkpoint, run / "resume.pt")
        before = (run / "resume.pt").read_bytes()
        result = run_cli(*_pruned_args(run, data_root))
        if result.code != 0:
            assert_refused(result)
            assert (run / "resume.pt").read_bytes() == before and not (run / "model.pt").exists()

    check()


def test_a_write_failing_at_any_moment_exits_2_with_one_line(finished_run: Path, data_root: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The n-th file write of a `train` or an `evaluate` fails as on a full disk (torch's RuntimeError, or ENOSPC)."""
    import errno
    import itertools

    import torch
    from hypothesis import HealthCheck, given, settings as hypothesis_settings
    from hypothesis import strategies as st

    from advprune import runtime

    model = _fast_checkpoint(finished_run, tmp_path)
    real_replace, real_save = os.replace, torch.save
    runs = itertools.count()

    @hypothesis_settings(max_examples=24, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(["train", "evaluate"]), st.sampled_from(["torch", "replace"]), st.integers(0, 6))
    def check(command: str, how: str, nth: int) -> None:
        calls = itertools.count()

        def replace(*args, **kwargs):
            if how == "replace" and next(calls) == nth:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_replace(*args, **kwargs)

        def save(*args, **kwargs):
            if how == "torch" and next(calls) == nth:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0")
            return real_save(*args, **kwargs)

        monkeypatch.setattr(runtime.os, "replace", replace)
        monkeypatch.setattr(torch, "save", save)
        try:
            out = tmp_path / f"out{next(runs)}"
            if command == "train":
                result = run_cli(*train_args(out, data_root, "--set", "epochs=2"))
            else:
                result = run_cli(*evaluate_args(model, out / "metrics.json", data_root))
        finally:
            monkeypatch.setattr(runtime.os, "replace", real_replace)
            monkeypatch.setattr(torch, "save", real_save)
        if result.code != 0:
            assert_refused(result, "cannot write", "nothing finished was lost")

    check()


# -- 12. degenerate and absurd inputs are refused up front, naming the limit ------------------------------------------
def test_12_a_dataset_without_training_points_is_refused(data_root: Path, tmp_path: Path) -> None:
    """It was a ZeroDivisionError."""
    import numpy as np

    from advprune import datasets

    arrays = datasets.load_canonical(data_root / f"{DATASET}.npz")
    root = tmp_path / "data"
    root.mkdir()
    np.savez(root / f"{DATASET}.npz", x_train=arrays.x_train[:0], y_train=arrays.y_train[:0].astype(np.uint8),
             x_test=arrays.x_test, y_test=arrays.y_test.astype(np.uint8))
    assert_refused(run_cli(*train_args(tmp_path / "run", root)), "x_train", "no images")


def test_12_a_seed_beyond_any_generator_in_train_json_is_refused(finished_run: Path, tmp_path: Path) -> None:
    """It was an OverflowError in collect."""
    import json

    write_metrics(finished_run)
    record = json.loads((finished_run / "train.json").read_text())
    record["seed"] = 10**30
    (finished_run / "train.json").write_text(json.dumps(record))
    assert_refused(run_cli("collect", finished_run, "--n-examples", "2", "--out", tmp_path / "t.csv"), "seed")


PRUNING_DAMAGE = {
    "truncated": lambda good: good[: len(good) // 2],
    "not a zip": lambda good: b"garbage",
    "empty": lambda good: b"",
}


@pytest.mark.parametrize("case", [*PRUNING_DAMAGE, "no kept", "float kept", "2-D kept", "object kept"])
def test_12_a_damaged_pruning_npz_is_refused_by_embed(case: str, finished_run: Path, data_root: Path,
                                                      tmp_path: Path) -> None:
    import numpy as np

    pruning = finished_run / ".finished" / "pruning.npz"
    good = pruning.read_bytes()
    (finished_run / "pruning.npz").unlink()  # a file of its own, not the finished copy it links to
    target = finished_run / "pruning.npz"
    if case in PRUNING_DAMAGE:
        target.write_bytes(PRUNING_DAMAGE[case](good))
    else:
        kept = {"no kept": None, "float kept": np.array([0.5, 1.5]), "2-D kept": np.zeros((2, 2), dtype=np.int64),
                "object kept": np.array([{"a": 1}], dtype=object)}[case]
        arrays = {"scores": np.zeros(3, dtype=np.float32)} | ({} if kept is None else {"kept": kept})
        with open(target, "wb") as handle:
            np.savez(handle, **arrays)
    data = data_root / f"{DATASET}.npz"
    result = run_cli("embed", "table2", "--variant", f"{DATASET}={data}", "--variant",
                     f"{DATASET} pruned={data}:{target}", "--out", tmp_path / "table2.pdf")
    assert_refused(result, str(target))


def test_12_absurd_sizes_are_refused_up_front_naming_the_limit(tmp_path: Path) -> None:
    """`seeds: 1e8` in `cost` (a list of 10^8 seeds, then of models), `toy --n 1e11` and `claims --resamples 1e11`
    ran out of memory (MemoryError), after minutes. Here with sizes that the old code still took (it printed a table
    for 20000 seeds): each is refused at once."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    config["artefacts"]["table1"]["seeds"] = 20_000
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(config))
    assert_refused(run_cli("cost", "table1", "--configfile", tmp_path / "seeds.yaml"), "artefacts.table1.seeds",
                   "1000")
    config["artefacts"]["table1"]["seeds"] = list(range(2000))
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(config))
    assert_refused(run_cli("cost", "table1", "--configfile", tmp_path / "seeds.yaml"), "artefacts.table1.seeds",
                   "1000")
    assert_refused(run_cli("claims", "--resamples", "100000000000", "--out", tmp_path / "c.csv"), "--resamples",
                   "1000000")
    assert_refused(run_cli("toy", "--n", "100000000000", "--out", tmp_path / "toy.pdf", "--runs",
                           tmp_path / "toy.csv"), "n", "10000000")
    assert_refused(run_cli("toy", "--seeds", *map(str, range(1001)), "--out", tmp_path / "toy.pdf", "--runs",
                           tmp_path / "toy.csv"), "seeds", "1000")


# -- 13. no pandas FutureWarning from drawing (a coming pandas makes it an error) -------------------------------------
@pytest.mark.filterwarnings("error::FutureWarning")
@pytest.mark.parametrize("name", ["fig2", "fig3", "fig5", "fig7"])
def test_13_a_line_of_one_point_draws_without_a_future_warning(name: str, tmp_path: Path) -> None:
    """seaborn's error bars reached matplotlib as one-element Series, which it probes with float(): pandas warns
    ('Calling float on a single element Series is deprecated'). A line of one point is a cell drawn alone: one
    pruned cell without the full-data runs (a partial run, or a subset drawn by hand)."""
    import numpy as np

    from advprune.report.aggregate import write_table
    from advprune.artefacts import get
    from advprune.report.render import render
    from test_report import DEMO_GRIDS, build, check_figure, grid_runs

    runs = grid_runs(DEMO_GRIDS, name)
    one_cell = runs[(runs["strategy"] == "random") & np.isclose(runs["keep"], 0.4)]
    assert len(one_cell) and one_cell["prune_epoch"].nunique() == 1
    write_table(one_cell, tmp_path / f"{name}.csv")
    render(get(name), tmp_path / f"{name}.csv", tmp_path / f"{name}.pdf")
    assert (tmp_path / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    check_figure(name, build(name, one_cell), one_cell)  # the bars are still each point's mean ± sd


def test_the_readme_lists_what_is_guaranteed_against_these_attacks() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Interruptions, failures and bad input"):]
    section = section[:section.index("\n## ", 1)]
    for text in ("symbolic link", "O_NOFOLLOW", "0700", "filelock", "orphan", ".finished/", "ADVPRUNE_WORKFLOW_JOB",
                 "checkpoint_sha256", "only files from this version on are checked", "full disk", "resume.pt",
                 "naming the limit", "run's own files"):
        assert text in section, text
