"""Training: deterministic per version, versions differ, behaviours from the suffix."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from model_server import model, train, versions


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {}
    for version in ("1.0.0", "1.1.0", "1.1.0-degraded"):
        train.train(version, root / version)
        out[version] = root / version
    return out


def test_artefacts_and_metadata(models: dict[str, Path]) -> None:
    directory = models["1.0.0"]
    metadata = model.read_metadata(directory)
    assert metadata["version"] == "1.0.0"
    assert metadata["behaviour"] == "normal"
    assert metadata["n_features"] == 13 == len(metadata["feature_names"])
    assert metadata["classes"] == [0, 1, 2]
    assert metadata["holdout_accuracy"] >= 0.9
    assert len(metadata["training_sha256"]) == 64
    rows = [json.loads(line) for line in (directory / train.HOLDOUT_FILE).read_text().splitlines()]
    assert len(rows) == metadata["holdout_size"] > 0
    assert all(len(r["instance"]) == 13 and r["label"] in (0, 1, 2) for r in rows)
    for name in (train.MODEL_FILE, train.METADATA_FILE, train.HOLDOUT_FILE):
        mode = (directory / name).stat().st_mode
        assert mode & stat.S_IROTH, f"{name} must be readable by the non-root server user"


def test_training_is_deterministic_per_version(models: dict[str, Path], tmp_path: Path) -> None:
    again = train.train("1.1.0", tmp_path / "again")
    first = model.read_metadata(models["1.1.0"])
    assert again["training_sha256"] == first["training_sha256"]
    x, _ = model.read_holdout(models["1.1.0"], first)
    a = model.load(models["1.1.0"]).predict(x)
    b = model.load(tmp_path / "again").predict(x)
    assert np.array_equal(a, b)


def test_minor_versions_are_different_models(models: dict[str, Path]) -> None:
    old, new = (model.read_metadata(models[v]) for v in ("1.0.0", "1.1.0"))
    assert old["estimator"] != new["estimator"]
    assert old["training_sha256"] != new["training_sha256"]
    assert old["model_sha256"] != new["model_sha256"]


def test_degraded_build_is_visibly_worse(models: dict[str, Path]) -> None:
    good = model.read_metadata(models["1.1.0"])
    bad = model.read_metadata(models["1.1.0-degraded"])
    assert bad["behaviour"] == "degraded"
    assert bad["holdout_accuracy"] < good["holdout_accuracy"] - 0.3


@pytest.mark.parametrize(
    ("text", "behaviour"),
    [
        ("1.0.0", versions.Behaviour.NORMAL),
        ("1.1.0-rc.1", versions.Behaviour.NORMAL),
        ("2.3.4-never-ready", versions.Behaviour.NEVER_READY),
        ("1.1.0-flaky", versions.Behaviour.FLAKY),
        ("1.1.0-slow-start+build.7", versions.Behaviour.SLOW_START),
        ("1.1.0-degraded", versions.Behaviour.DEGRADED),
        ("1.1.0-stall", versions.Behaviour.STALL),
        ("1.1.0-bad-body", versions.Behaviour.BAD_BODY),
        ("1.1.0-slow", versions.Behaviour.SLOW),
        ("1.1.0-slowish", versions.Behaviour.NORMAL),
    ],
)
def test_behaviour_from_prerelease_suffix(text: str, behaviour: versions.Behaviour) -> None:
    assert versions.parse(text).behaviour is behaviour


@pytest.mark.parametrize("text", ["1.0", "v1.0.0", "01.0.0", "1.0.0-", "latest", ""])
def test_bad_versions_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="not semver"):
        versions.parse(text)


def test_train_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["--version", "1.0.0-flaky", "--out", str(tmp_path)]) == 0
    assert "hold-out accuracy" in capsys.readouterr().out
    assert model.read_metadata(tmp_path)["behaviour"] == "flaky"
    assert train.main(["--version", "one", "--out", str(tmp_path / "x")]) == 2


def test_load_refuses_a_swapped_model_file(models: dict[str, Path], tmp_path: Path) -> None:
    directory = tmp_path / "m"
    train.train("1.0.0", directory)
    (directory / train.MODEL_FILE).write_bytes((models["1.1.0"] / train.MODEL_FILE).read_bytes())
    with pytest.raises(model.ModelLoadError, match="sha256"):
        model.load(directory)


def test_missing_model_dir_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(model.ModelLoadError, match=r"model_server\.train"):
        model.read_metadata(tmp_path)
