"""Runs one Pulumi Python program for the harness's language host
(harness/toolchain/python_host.py).

Started in the program's own Python, so it imports nothing but the standard library
and the pulumi SDK that the program needs anyway; it lies in a folder of its own
because Python puts a script's folder first on sys.path, where nothing may shadow
the SDK. The engine's addresses and the
stack come as flags; the configuration in PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS
(JSON), where the SDK reads it. The program is a folder (its ``__main__.py``) or a
file, run as ``__main__`` with its folder first on sys.path, as ``python PROGRAM``
would run it.

Exit status: 0 when the program ran; 32 when it failed and the engine has been told
why (the traceback or the SDK's error, as a diagnostic); 3 when that Python has no
pulumi SDK; anything else means this script itself could not start, with Python's
own message on stderr.
"""

import argparse
import asyncio
import os
import runpy
import sys
import traceback

BAILED = 32
NO_SDK = 3


def main() -> int:
    parser = argparse.ArgumentParser(prog="run_program")
    for flag in ("--monitor", "--engine", "--project", "--stack", "--organization"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("program")
    parser.add_argument("args", nargs="*")
    a = parser.parse_args()

    try:
        import pulumi
        from pulumi.errors import RunError
        from pulumi.runtime import reset_options, run_in_stack
    except ImportError:
        return NO_SDK

    reset_options(project=a.project, stack=a.stack, monitor_address=a.monitor,
                  engine_address=a.engine, parallel=a.parallel, preview=a.dry_run,
                  organization=a.organization)
    main_file = os.path.join(a.program, "__main__.py") if os.path.isdir(a.program) \
        else a.program
    if not os.path.isfile(main_file):
        pulumi.log.error(f"no Python program at {main_file}: a Python project runs "
                         "__main__.py in its folder (or the file `main` names in Pulumi.yaml)")
        return BAILED
    sys.path.insert(0, os.path.dirname(os.path.abspath(main_file)))
    sys.argv = [main_file, *a.args]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            run_in_stack(lambda: runpy.run_path(main_file, run_name="__main__")))
    except RunError as e:
        pulumi.log.error(str(e))
        return BAILED
    except Exception:
        pulumi.log.error(f"the program raised an exception:\n{traceback.format_exc()}")
        return BAILED
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.close()
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
