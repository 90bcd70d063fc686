"""Where the files the harness ships with live: the chart, the program, the load, the recipes.

One home for every path into the project's own files, so that how they are
packaged changes one module. In a checkout they are the folders beside
harness/ (toolchain/, charts/, load/, programs/, images/). A wheel carries the
same folders, in the same layout, as package data in harness/_shipped/
(pyproject.toml maps them there), so an installed harness reads its own copy
and never a source tree; a checkout, and the editable install the Makefile
makes of it, has no harness/_shipped and reads the folders in place.

They are plain paths rather than `importlib.resources` traversables because
helm, docker, go and locust are handed them: they must be real files on disk,
which an installed wheel (unzipped, executable bits kept) provides.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "_shipped"
"""The copy of the project's folders inside an installed wheel (absent in a checkout)."""

ROOT = SHIPPED if SHIPPED.is_dir() else SHIPPED.parents[1]
"""The folder holding toolchain/, charts/, load/, programs/ and images/: the wheel's
copy when installed, else the checkout that harness/ sits in."""

RECIPES = ROOT / "toolchain"
"""Pinned recipes for hosts that cannot download releases (Go modules, image files)."""

CHART_DIR = ROOT / "charts" / "ml-model"
"""The model server's Helm chart."""

SERVER_IMAGE = "rollout-harness/model-server"
"""The bundled model server's image name (its tag is the version), built from SERVER_DIR."""

LOCUSTFILE = ROOT / "load" / "locustfile.py"
"""The inference load, also usable alone with `locust -f`; `recording.py` lies beside it
(Locust puts the locustfile's folder on `sys.path`)."""

HOLDOUT = ROOT / "load" / "holdout.jsonl"
"""The model's labelled hold-out rows, exactly as `model_server.train` writes them into
every image (the split is the same for every version): a canary's paired checks send
them to the baseline and the candidate alike."""

SERVER_DIR = ROOT / "images" / "model-server"
"""The model server's sources and Dockerfile."""

PROGRAM_DIR = ROOT / "programs" / "ml_model"
"""The Pulumi project folder (Pulumi.yaml, __main__.py) for `pulumi up` by hand; the
harness runs the same program inline (harness/deploy.py)."""
