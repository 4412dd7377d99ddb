"""TensorFlow's C++ probe lines are dropped from stderr; everything else passes through."""

from __future__ import annotations

import subprocess
import sys

from relabel.quiet import is_noise

PROBE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796221816.097534   31170 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796221816.122614   31170 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1796221919.603121   31170 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter, its stderr captured."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)


def test_only_the_probe_lines_are_noise() -> None:
    assert all(is_noise(line) for line in PROBE_LINES)
    for line in ("Traceback (most recent call last):", "error: images/00007.png: corrupt",
                 "E0000 00:00:1.0 1 gpu_device.cc:2022] Out of memory while allocating",
                 "W0000 00:00:1.0 1 op_level_cost_estimator.cc:699] Error in PredictCost()"):
        assert not is_noise(line), line


def test_the_filter_forwards_everything_else_before_the_process_ends() -> None:
    code = (
        "import os, sys\n"
        "from relabel.quiet import filter_native_stderr\n"
        "filter_native_stderr()\n"
        f"lines = {PROBE_LINES!r}\n"
        "os.write(2, ('\\n'.join(lines[:2]) + '\\nkept from C\\n').encode())\n"
        "os.write(2, ('\\n'.join(lines[2:]) + '\\n').encode())\n"
        "print('kept from Python', file=sys.stderr)\n"
        "raise SystemExit('error: the last words')\n"
    )
    result = _python(code)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["kept from C", "kept from Python",
                                          "error: the last words"]


def test_a_program_started_by_exec_keeps_its_stderr() -> None:
    """`relabel mlflow-ui` execs MLflow: it must write to the real stderr, not the pipe."""
    code = (
        "import os, sys\n"
        "from relabel.quiet import filter_native_stderr, restore_native_stderr\n"
        "filter_native_stderr()\n"
        "restore_native_stderr()\n"
        "os.execv(sys.executable, [sys.executable, '-c', "
        "'import sys; print(\"from the new program\", file=sys.stderr)'])\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "from the new program"


def test_benchmarks_get_a_verbose_flag_that_keeps_stderr_as_it_is() -> None:
    import argparse
    import os

    from relabel.quiet import parse_args_quietly

    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    before = os.fstat(2).st_ino
    args = parse_args_quietly(parser, ["--seed", "3", "--verbose"])
    assert args.seed == 3 and args.verbose
    assert os.fstat(2).st_ino == before  # --verbose: no filter on fd 2
