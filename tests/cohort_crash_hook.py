"""Ray's worker_process_setup_hook for tests/test_cohort.py: a worker process exits abruptly
(os._exit, as a segfault or the OOM killer would end it) when it is about to run the network on the case
named in the flag file, which it removes first, so that the retry elsewhere succeeds."""
from __future__ import annotations

import os
from pathlib import Path

FLAG_ENV = "PANTHER_COHORT_TEST_CRASH_FLAG"


def install() -> None:
    from panther_seg.inference import pipeline

    flag = os.environ.get(FLAG_ENV)
    if not flag:
        return
    original = pipeline.Segmenter.infer

    def infer(self, prepared, timings, source):  # type: ignore[no-untyped-def]
        path = Path(flag)
        if source is not None and path.is_file() and path.read_text().strip() == Path(str(source)).name:
            path.unlink()
            os._exit(1)
        return original(self, prepared, timings, source)

    pipeline.Segmenter.infer = infer
