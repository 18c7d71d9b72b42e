"""The console entry point: loads the command line with the cyclic garbage collector paused.

Loading the command line and its libraries creates about 40,000 long-lived objects the
collector tracks (classes, functions, their dicts). With the collector running, each batch of
new objects triggers a pass over the ones before it: about 60 ms of CPU, a sixth of a short
sync's start-up.
None of them is garbage, so the collector is paused while they are created and then told to
leave them out of every later pass (``gc.freeze``), which also shortens the passes during the
run.
"""

from __future__ import annotations

import gc


def main() -> None:
    """Console entry point (``longbow``)."""
    gc.disable()
    try:
        from s3longbow.cli.app import main as run
    finally:
        gc.freeze()
        gc.enable()
    run()
