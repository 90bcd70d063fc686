"""One run per cluster name: the second is refused with who holds it, a killed one frees it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import runlock

HOLD = """
import sys, time
from pathlib import Path
from harness import runlock
with runlock.held(Path(sys.argv[1]), "busy"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_the_name_is_refused_and_a_dead_holder_frees_it(tmp_path: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "verify", "--x"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(runlock.ClusterBusy) as refused, runlock.held(tmp_path, "busy"):
            pass
        assert str(refused.value).startswith(
            f"cluster busy is in use by another run (pid {holder.pid}, `rollout-harness ")
        assert str(refused.value).endswith(
            "wait for it to end, or give another --name for a cluster of its own")
        assert refused.value.exit_code == 75
        with runlock.held(tmp_path, "other"):  # another name is free
            pass
    finally:
        holder.kill()  # SIGKILL: no clean-up ran
        holder.wait()
    busy = pytest.raises(runlock.ClusterBusy, match=r"\(pid \d+, `rollout-harness")
    with runlock.held(tmp_path, "busy"), busy, runlock.held(tmp_path, "busy"):
        pass
