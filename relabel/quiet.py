"""Keep TensorFlow's C++ start-up chatter off the user's terminal.

TensorFlow writes its oneDNN notice, its CUDA probe ("Could not find cuda drivers",
"failed call to cuInit ... (303)" on every CPU-only machine) and the absl pre-init warning
straight to file descriptor 2 from C++, before and regardless of TF_CPP_MIN_LOG_LEVEL, so
no Python logging setting can stop them. `filter_native_stderr` puts a pipe on fd 2 and a
thread that forwards every line except those known probe lines; `--verbose` skips it.
Everything else (tracebacks, warnings, a real CUDA error on a GPU machine) passes through.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import sys
import threading

# Only the probe lines of a CPU-only start-up; a GPU machine's real errors are not matched.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} [\d:. ]+\s+\d+ (port\.cc|cudart_stub\.cc|cuda_platform\.cc|cuda_executor\.cc"
    r"|cuda_fft\.cc|cuda_dnn\.cc|cuda_blas\.cc|gpu_device\.cc|cpu_feature_guard\.cc)"
    r":\d+\] .*(oneDNN custom operations|Could not find cuda drivers|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|TensorFlow binary is optimized"
    r"|Cannot dlopen some GPU libraries|rebuild TensorFlow with the appropriate compiler))"
)

_installed = False
_original_fd: int | None = None


def is_noise(line: str) -> bool:
    return bool(NOISE.match(line))


def filter_native_stderr() -> None:
    """Route fd 2 through a filter thread for the rest of the process (once)."""
    global _installed
    if _installed:
        return
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return  # no usable fd 2 (an embedded interpreter): leave it alone
    global _original_fd
    _installed = True
    _original_fd = os.dup(original)  # kept open for restore_native_stderr
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(original, "wb", 0) as out:
            for raw in pipe:
                if not is_noise(raw.decode("utf-8", "replace")):
                    out.write(raw)

    thread = threading.Thread(target=forward, name="relabel-stderr-filter", daemon=True)
    thread.start()

    @atexit.register
    def _drain() -> None:
        # Give fd 2 back and close the pipe's last writer, so every line is forwarded
        # before the process ends (child processes still holding it end with us).
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        restored = os.dup(original) if thread.is_alive() else None
        if restored is not None:
            os.dup2(restored, 2)
            os.close(restored)
        thread.join(timeout=2)


def restore_native_stderr() -> None:
    """Give fd 2 back to the real stderr: before `os.exec*` (the filter thread would not
    survive it, and the new program would write into a pipe nobody reads)."""
    if _original_fd is None:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_original_fd, 2)


def parse_args_quietly(parser: argparse.ArgumentParser,
                       argv: list[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args(argv)` with a `--verbose` flag added; without it, fd 2 is filtered
    as the CLI does (for the benchmark scripts, which import TensorFlow)."""
    parser.add_argument("--verbose", action="store_true",
                        help="keep TensorFlow's C++ start-up notices on stderr")
    args = parser.parse_args(argv)
    if not args.verbose:
        filter_native_stderr()
    return args
