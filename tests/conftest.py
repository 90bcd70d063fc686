"""Shared pytest set-up: e2e tests are marked by folder and always run last.

Among them, those marked `own_clusters` (they make and remove clusters of their
own) run first, before the session's shared cluster is made: the machine has
two cores, and an idle cluster beside two rollouts would be measured too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: (E2E in Path(item.path).parents,
                                 item.get_closest_marker("own_clusters") is None))
