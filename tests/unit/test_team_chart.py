"""A team's chart and image through the bundled program: what is refused before anything
is built, and how the deploy settings reach the program's config."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helm_binary import toolchain_helm

from harness import deploy, errors, startup
from harness.settings import Settings

EXAMPLE = Path(__file__).parents[2] / "examples" / "mlserver"
TEAM = Settings().replace("deploy", chart=EXAMPLE / "chart",
                          image_repository="example/wine-mlserver",
                          image_build=EXAMPLE / "image")


def test_the_program_gets_the_teams_chart_image_and_name() -> None:
    config = deploy.model_config(TEAM, "1.1.0", {}, EXAMPLE / "chart", None, 40000)
    assert config.chart_path == str(EXAMPLE / "chart")
    values = config.chart_values()
    assert values["image"] == {"repository": "example/wine-mlserver", "tag": "1.1.0"}
    assert values["service"] == {"type": "NodePort", "nodePort": 30080}
    repo = TEAM.replace("deploy", chart=None, chart_repo="http://127.0.0.1:8879",
                        chart_name="wine-mlserver")
    config = deploy.model_config(repo, "1.1.0", {}, None, "http://127.0.0.1:8879", None)
    assert (config.chart_repo, config.chart_name) == ("http://127.0.0.1:8879", "wine-mlserver")


def test_the_bundled_image_stays_the_values_default() -> None:
    """`--set image.repository=...` (a staging registry) must not meet a second answer."""
    config = deploy.model_config(Settings(), "1.0.0", {"image": {"repository": "reg/m"}},
                                 EXAMPLE / "chart", None, None)
    assert config.image_repository is None
    assert config.chart_values()["image"]["repository"] == "reg/m"


def test_the_teams_values_are_rendered_into_its_chart_before_anything_starts(
        tmp_path: Path) -> None:
    helm = toolchain_helm()
    chosen = TEAM.replace("deploy", values={"preStopSleepSeconds": 0})
    deploy.check_values(chosen, helm, "1.1.0", tmp_path)  # renders: no error
    broken = tmp_path / "chart"
    (broken / "templates").mkdir(parents=True)
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 1.0.0\n")
    (broken / "templates" / "x.yaml").write_text("{{ .Values.missing.key }}\n")
    with pytest.raises(errors.UsageError, match=r"--chart .*chart does not render with these "
                                                r"values, nothing was created: .*missing"):
        deploy.check_values(TEAM.replace("deploy", chart=broken, values={"a": 1}), helm,
                            "1.1.0", tmp_path / "scratch")


@pytest.mark.parametrize(("change", "problem"), [
    ({"chart": EXAMPLE}, r"--chart must be a chart folder \(with Chart\.yaml\) or a packaged "
                         r"\.tgz, not '.*examples/mlserver'"),
    ({"image_build": EXAMPLE / "chart"}, r"--image-build .*: no Dockerfile in it"),
])
def test_a_chart_or_build_folder_that_is_not_one_is_one_line(change: dict[str, Path],
                                                            problem: str) -> None:
    with pytest.raises(errors.UsageError, match=problem):
        startup.validate(TEAM.replace("deploy", **change), ("1.0.0", "1.1.0"))


def test_the_canary_and_the_calibration_need_the_bundled_chart_and_server() -> None:
    from harness import calibrate, canary

    with pytest.raises(errors.UsageError, match="bundled chart and server only"):
        canary.check(TEAM)
    with pytest.raises(errors.UsageError, match="bundled chart and server only"):
        canary.check(Settings().replace("traffic", answer_version="body"))
    with pytest.raises(errors.UsageError, match="fault builds of the bundled server"):
        calibrate.calibrate(TEAM)


def test_the_examples_prestop_hook_starts_the_drain_its_runtime_reads(tmp_path: Path) -> None:
    """examples/mlserver drains kept-alive clients (`Connection: close`) from the moment the
    preStop hook creates the file its runtime looks for; its negative control removes the
    hook. The e2e run shows the effect; this holds the three files to one path."""
    helm = toolchain_helm()

    def lifecycle(*sets: str) -> object:
        out = subprocess.run([str(helm), "template", "wine", str(EXAMPLE / "chart"), *sets],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        deployment = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
        return deployment["spec"]["template"]["spec"]["containers"][0].get("lifecycle")

    runtime = (EXAMPLE / "image" / "wine_runtime.py").read_text()
    drain_file = re.search(r'DRAIN_FILE = os\.environ\.get\("DRAIN_FILE", "([^"]+)"\)', runtime)
    assert drain_file is not None
    assert lifecycle() == {"preStop": {"exec": {"command": [
        "sh", "-c", f"touch {drain_file[1]} && sleep 10"]}}}
    assert lifecycle("--set", "preStopSleepSeconds=0") is None
    assert '"implementation": "wine_runtime.WineModel"' in (
        EXAMPLE / "image" / "train.py").read_text()
    assert "cp /build/wine_runtime.py /models/wine/" in (
        EXAMPLE / "image" / "Dockerfile").read_text()
