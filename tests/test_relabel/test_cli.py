"""The `relabel` command: options are checked and bad data is refused before any server,
tracking store or run folder exists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relabel.cli import app


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default: ./mlflow.db
    return tmp_path


def test_run_refuses_a_missing_dataset_before_starting_anything(in_tmp: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--data", "no/such/folder"])
    assert result.exit_code == 2
    assert "no/such/folder: dataset folder not found" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in in_tmp.iterdir()) == []  # no mlflow.db, no runs/, no cache


def test_run_refuses_bad_data_naming_the_file_and_line(in_tmp: Path) -> None:
    from relabel.tasks.demodata import generate_demo_data

    data = generate_demo_data(in_tmp / "data", num_train=60, num_clean=20, num_test=5)
    lines = (data / "noisy_labels.csv").read_text().splitlines()
    lines[6] = "12"
    (data / "noisy_labels.csv").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["run", "--data", str(data), "--cache-dir", "cache"])
    assert result.exit_code == 2
    assert "noisy_labels.csv:7: label 12 is out of range 0..9" in result.output
    assert not (in_tmp / "mlflow.db").exists() and not (in_tmp / "runs").exists()


@pytest.mark.parametrize(("option", "message"), [
    ("retrain_epochs", "expected FIELD=VALUE"),
    ("retrain_epoch=3", "no such profile field retrain_epoch"),
    ("width=wide", "width"),
])
def test_run_set_names_a_bad_override(in_tmp: Path, option: str, message: str) -> None:
    result = CliRunner().invoke(app, ["run", "--set", option])
    assert result.exit_code == 2
    assert message in result.output


def test_run_refuses_an_output_dir_holding_results_unless_overwrite(in_tmp: Path) -> None:
    """Another run's results are never replaced by accident: refused before anything
    starts, the folder untouched."""
    out = in_tmp / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    result = CliRunner().invoke(app, ["run", "--data", "no/such/folder", "--output-dir",
                                      str(out)])
    assert result.exit_code == 2 and "already holds results" in result.output
    assert "--overwrite" in result.output
    assert sorted(p.name for p in in_tmp.iterdir()) == ["out"]
    assert (out / "metrics.json").read_text() == "{}"
    # With --overwrite the folder is accepted; the next check (the data) is what refuses.
    result = CliRunner().invoke(app, ["run", "--data", "no/such/folder", "--output-dir",
                                      str(out), "--overwrite"])
    assert result.exit_code == 2 and "dataset folder not found" in result.output


def test_ingest_refuses_a_negative_worker_count(in_tmp: Path) -> None:
    result = CliRunner().invoke(app, ["ingest", ".", "--workers", "-1"])
    assert result.exit_code == 2
    assert "workers" in result.output


def _relabel(*args: str, cwd: Path,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command's entry point (relabel.cli:run_cli) in a fresh process."""
    code = "import sys; from relabel.cli import run_cli; sys.argv[0] = 'relabel'; run_cli()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_an_expected_failure_is_one_line_and_exit_2_traceback_only_when_verbose(
        in_tmp: Path) -> None:
    from relabel.tasks.demodata import generate_demo_data

    data = generate_demo_data(in_tmp / "data", num_train=40, num_clean=10, num_test=5)
    (in_tmp / "cache-file").write_text("not a folder")
    quiet = _relabel("ingest", str(data), "--cache-dir", "cache-file", cwd=in_tmp)
    assert quiet.returncode == 2, quiet.stderr
    assert quiet.stderr.startswith("error: ") and "cache-file" in quiet.stderr
    assert "Traceback" not in quiet.stderr and len(quiet.stderr.strip().splitlines()) == 1
    loud = _relabel("--verbose", "ingest", str(data), "--cache-dir", "cache-file", cwd=in_tmp)
    assert loud.returncode == 1 and "Traceback" in loud.stderr
    usage = _relabel("ingest", cwd=in_tmp)
    assert usage.returncode == 2 and "Missing argument" in usage.stderr


QUICK_EXIT = """
import atexit, logging, sys
import relabel.cli as cli

def command():
    # What a library does during a command: an exit handler and buffered output.
    atexit.register(lambda: open(sys.argv[1], "w").write("flushed"))
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    logging.getLogger("relabel").info("logged line")
    sys.stdout.write("no newline yet")
    sys.exit(int(sys.argv[2]))

cli.run_cli = command
cli.console_main()
"""


@pytest.mark.parametrize("code", [0, 3])
def test_the_console_script_exits_with_its_status_after_every_exit_handler(
        tmp_path: Path, code: int) -> None:
    """`relabel` skips the interpreter's module teardown (slow after TensorFlow) but not the
    exit handlers that libraries register during the command, nor buffered output."""
    marker = tmp_path / "marker"
    run = subprocess.run([sys.executable, "-c", QUICK_EXIT, str(marker), str(code)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == code, run.stderr
    assert run.stdout.splitlines()[-2:] == ["logged line", "no newline yet"]
    assert marker.read_text() == "flushed"


@pytest.mark.slow
def test_run_refuses_a_tracking_server_that_does_not_answer_before_starting_anything(
        in_tmp: Path) -> None:
    from relabel.prefect_server import free_port
    from relabel.tasks.demodata import generate_demo_data

    data = generate_demo_data(in_tmp / "data", num_train=40, num_clean=10, num_test=5)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = _relabel("run", "--data", str(data), "--profile", "smoke", cwd=in_tmp,
                    env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert errors[0].startswith(f"error: MLflow tracking server {uri} is not answering")
    assert "temporary API" not in done.stdout + done.stderr  # no server was started
    assert not (in_tmp / "runs").exists()


@pytest.mark.slow
def test_a_stage_failing_on_a_wrong_path_is_one_error_line_and_exit_2(in_tmp: Path) -> None:
    from relabel.tasks.demodata import generate_demo_data

    data = generate_demo_data(in_tmp / "data", num_train=200, num_clean=100, num_test=10)
    (in_tmp / "blocker").write_text("a file where the run folder's parent should be")
    args = ("run", "--data", str(data), "--profile", "smoke", "--models", "baseline",
            "--output-dir", "blocker/run")
    quiet = _relabel(*args, cwd=in_tmp, env={"RELABEL_TRACKING": "off"})
    assert quiet.returncode == 2, quiet.stderr[-3000:]
    last = quiet.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "blocker" in last, last
    assert "Traceback" not in quiet.stdout + quiet.stderr
    assert "retry" not in (quiet.stdout + quiet.stderr).lower()  # a wrong path stays wrong
    loud = _relabel("--verbose", *args, cwd=in_tmp, env={"RELABEL_TRACKING": "off"})
    assert loud.returncode == 1 and "Traceback" in loud.stdout + loud.stderr


@pytest.mark.slow
def test_a_production_run_trains_on_every_clean_label_and_reports_the_test_folder(
        in_tmp: Path) -> None:
    """`--validation-size 0`: no validation images, so the labelled test folder is the only
    measure: the table, metrics.json and the registry say so."""
    import json

    import mlflow

    from relabel.registry import METRIC_TAG, MODEL_NAME
    from relabel.tasks.demodata import generate_demo_data

    data = generate_demo_data(in_tmp / "data", num_train=300, num_clean=150, num_test=40)
    done = _relabel("run", "--data", str(data), "--profile", "smoke", "--validation-size", "0",
                    "--output-dir", "out", cwd=in_tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout[done.stdout.index("\nmodel"):].splitlines()[1:5]
    assert table[0].split() == ["model", "test", "folder"], table
    assert "(label_prediction.csv, metrics.json, plots)" in done.stdout
    metrics = json.loads((in_tmp / "out" / "metrics.json").read_text())
    assert metrics["counts"]["validation"] == 0 and metrics["counts"]["clean_train"] == 150
    model2 = metrics["scores"]["Model II"]
    assert model2["validation"] is None and 0 <= model2["test"]["accuracy"] <= 1
    assert not [k for k in metrics["correction"]["metrics"] if k.startswith("validation")]
    client = mlflow.MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    (version,) = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert float(version.tags[METRIC_TAG]) == pytest.approx(model2["test"]["accuracy"])
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == version.version


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_a_run_within_a_batch_while_a_fold_trains_on_the_thread_runner(
        in_tmp: Path, signum: signal.Signals) -> None:
    """`kill` or Ctrl-C while the teacher trains on a runner thread: the run ends at the
    fold's next batch instead of after its last epoch, and publishes nothing."""
    from relabel.tasks.demodata import generate_demo_data

    data = generate_demo_data(in_tmp / "data", num_train=600, num_clean=300, num_test=10)
    # Ctrl-C as at a terminal: a shell starts background jobs (CI's too) with SIGINT ignored,
    # and Python then keeps it ignored.
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from relabel.cli import run_cli; sys.argv[0] = 'relabel'; run_cli()")
    epochs = 400  # minutes of training: far longer than a stop may take
    process = subprocess.Popen(
        [sys.executable, "-c", code, "run", "--data", str(data), "--profile", "smoke",
         "--models", "model2", "--set", f"clean_epochs={epochs}", "--output-dir", "out"],
        cwd=in_tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "RELABEL_TRACKING": "off"})
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # until the teacher has trained one epoch
        seen.append(line)
        if "clean model fold" in line and f": epoch 1/{epochs}" in line:
            break
    else:
        pytest.fail("the run ended before the teacher trained:\n" + "".join(seen[-40:]))
    process.send_signal(signum)
    try:
        rest, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0
    epochs_after = [line for line in rest.splitlines() if "clean model fold" in line
                    and ": epoch " in line]
    assert len(epochs_after) <= 2, epochs_after[-3:]
    assert f"epoch {epochs}/{epochs}" not in rest
    assert not (in_tmp / "out" / "metrics.json").exists()
