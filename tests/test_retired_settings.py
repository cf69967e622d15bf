"""A retired setting (advprune.settings.RETIRED_SETTINGS) loses nothing already computed. `eval_batch_size` was part of
every run's resolved settings, and so of its identity in resume.pt, prefix.pt and model.pt, though no command read
it. Files written while it was there (here: this code's files with the key put back, as the code before wrote it)
still resume, fork and count as finished, to the same model; a file of another run is still refused; and setting it
now is a one-line error that says why.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from advprune import cli, datasets, settings
from advprune.checkpoint import load_checkpoint, save_checkpoint
from advprune.identity import ModelKey
from advprune.prefix import ForeignPrefix, PrefixKey, build_prefix, prefix_trainer
from advprune.training import Trainer

CPU = torch.device("cpu")
SIZES = ["epochs=3", "monitor.n_points=64"]
DATASET = "digits-mnist"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("digits")
    path = datasets.prepare(DATASET, root)
    arrays = datasets.load_canonical(path, datasets.get_dataset(DATASET))
    return {"root": root, "x": arrays.x_train, "y": arrays.y_train, "sha": datasets.file_sha256(path)}


def _with_retired_setting(path: Path, **changed: Any) -> None:
    """Rewrite the checkpoint at `path` as the code before the retirement wrote it: `eval_batch_size` among its
    settings, after `monitor` (and any `changed` setting, to make it another run's)."""
    checkpoint = load_checkpoint(path)
    checkpoint["settings"] = {**checkpoint["settings"], "eval_batch_size": 1000, **changed}
    checkpoint.pop("format")
    save_checkpoint(path, checkpoint)


def _trainer(digits: dict[str, Any], key: ModelKey, resolved: dict, out: Path) -> Trainer:
    return Trainer(key, resolved, digits["x"], digits["y"], out_dir=out, device=CPU, dataset_sha256=digits["sha"],
                   show_progress=False)  # fmt: skip


def _prefix(digits: dict[str, Any], key: ModelKey, resolved: dict, out: Path) -> Path:
    trainer = prefix_trainer(PrefixKey.of(key), resolved, digits["x"], digits["y"], out_dir=out, device=CPU,
                             dataset_sha256=digits["sha"], show_progress=False)  # fmt: skip
    return build_prefix(trainer, key.prune_epoch)


def _weights(out: Path) -> list[str]:
    return [row["weights_sha256"] for row in load_checkpoint(out / "model.pt")["state"]["history"]]


def test_setting_a_retired_key_is_an_error_that_says_why() -> None:
    with pytest.raises(ValueError, match=r"retired setting\(s\), remove them: eval_batch_size .*--batch-size"):
        settings.resolve(DATASET, overrides=["eval_batch_size=500"])
    assert "eval_batch_size" not in settings.resolve(DATASET)


def test_the_train_command_refuses_a_retired_key_in_one_line(digits, tmp_path, capsys) -> None:
    code = cli.main(["train", "--dataset", DATASET, "--strategy", "random", "--keep", "0.5", "--prune-epoch", "1",
                     "--seed", "0", "--out", str(tmp_path / "run"), "--data-root", str(digits["root"]),
                     "--device", "cpu", "--no-progress", "--set", "eval_batch_size=1000"])  # fmt: skip
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "eval_batch_size" in lines[0] and "retired" in lines[0], lines
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_prefix_and_a_resume_point_written_with_it_continue_to_the_same_model(digits, tmp_path) -> None:
    resolved = settings.resolve(DATASET, overrides=SIZES)
    key = ModelKey.from_settings(DATASET, "low+high", 0.5, 1, 0, resolved)
    _trainer(digits, key, resolved, tmp_path / "scratch").fit()

    prefix = _prefix(digits, key, resolved, tmp_path / "prefix")
    _with_retired_setting(prefix)
    _trainer(digits, key, resolved, tmp_path / "fork").fork_from(prefix)  # the fork's own resume.pt, then "killed"
    _with_retired_setting(tmp_path / "fork" / "resume.pt")
    resumed = _trainer(digits, key, resolved, tmp_path / "fork")
    assert resumed.try_resume()
    resumed.fit()
    assert _weights(tmp_path / "fork") == _weights(tmp_path / "scratch")
    assert "eval_batch_size" not in load_checkpoint(tmp_path / "fork" / "model.pt")["settings"]


def test_a_file_of_another_run_is_still_refused(digits, tmp_path) -> None:
    """The retired key is left out of the comparison, nothing else: a prefix with another eps is another run's."""
    resolved = settings.resolve(DATASET, overrides=SIZES)
    key = ModelKey.from_settings(DATASET, "low+high", 0.5, 1, 0, resolved)
    prefix = _prefix(digits, key, resolved, tmp_path / "prefix")
    _with_retired_setting(prefix, eps=0.25)
    with pytest.raises(ForeignPrefix, match="another run"):
        _trainer(digits, key, resolved, tmp_path / "fork").fork_from(prefix)
    assert prefix.exists()


def test_a_model_finished_with_it_is_not_trained_again(digits, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "--dataset", DATASET, "--strategy", "random", "--keep", "0.5", "--prune-epoch", "1",
            "--seed", "0", "--out", str(out), "--data-root", str(digits["root"]), "--device", "cpu",
            "--no-progress", *[a for item in SIZES for a in ("--set", item)]]  # fmt: skip
    monkeypatch.setenv(cli.WORKFLOW_JOB, "1")
    assert cli.main(argv) == 0
    # As a model finished before `.finished/` existed, by the code that recorded eval_batch_size.
    shutil.rmtree(out / ".finished")
    _with_retired_setting(out / "model.pt")
    before = (out / "model.pt").read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "holds this run, finished" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == before
    # Its other settings still count: kept files of another eps are another run's. Snakemake removes a job's
    # outputs before it runs; the job then trains this run anew instead of taking them.
    _with_retired_setting(out / ".finished" / "model.pt", eps=0.25)
    for name in ("model.pt", "train.json", "pruning.npz"):
        (out / name).unlink()
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "holds this run, finished" not in capsys.readouterr().err
    assert load_checkpoint(out / "model.pt")["settings"]["eps"] != 0.25
