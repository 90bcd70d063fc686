"""Where the files the harness ships with live: the chart, the program, the load, the recipes.

One home for every path into the project's own files, so that packaging them
differently (a wheel's package data, a vendored copy) changes one module.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The project folder: harness/ and its sibling folders."""

RECIPES = ROOT / "toolchain"
"""Pinned recipes for hosts that cannot download releases (Go modules, image files)."""

CHART_DIR = ROOT / "charts" / "ml-model"
"""The model server's Helm chart."""

LOCUSTFILE = ROOT / "load" / "locustfile.py"
"""The inference load, also usable alone with `locust -f`."""

HOLDOUT = ROOT / "load" / "holdout.jsonl"
"""The model's labelled hold-out rows, exactly as `model_server.train` writes them into
every image (the split is the same for every version): a canary's paired checks send
them to the baseline and the candidate alike."""

SERVER_DIR = ROOT / "images" / "model-server"
"""The model server's sources and Dockerfile."""
