"""Logging a Keras classifier to MLflow (a local SQLite store, no server): nothing to warn
about, and the logged pyfunc answers like the pipeline. Promotion and serving through a
real server and S3: tests/test_relabel/test_tracking.py."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from package_copy import ROOT, installed_layout, run_in_copy

from relabel import CLASS_NAMES


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def mlflow_run(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(tracking URI, run id) of a fresh SQLite store; the process's tracking URI is put back
    afterwards (log_keras_classifier points MLflow's fluent API at the store it logs to)."""
    import mlflow
    from mlflow import MlflowClient

    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("quiet", (tmp_path / "mlruns").as_uri())
    yield uri, client.create_run(experiment).info.run_id
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_logging_a_keras_classifier_warns_nothing_and_it_serves(mlflow_run, tmp_path,
                                                                capfd) -> None:
    """`relabel run` logs Model I and Model II this way. MLflow warned twice per model (the
    pyfunc pickled with CloudPickle; no input example), the second with raw ANSI colour
    codes, and drew a progress bar copying the model file; now the pyfunc is logged as code
    with a serving example, and loads back."""
    import mlflow

    from relabel import registry
    from relabel.tasks.models import build_model
    from relabel.tasks.predict import predict_batch
    from relabel.tasks.train import save_model

    uri, run = mlflow_run
    model = build_model("airbench", width=0.25)
    keras_file = save_model(model, tmp_path / "model.keras")
    handler = _Records()
    mlflow_logger = logging.getLogger("mlflow")  # its own handlers; it does not propagate
    mlflow_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model_uri = registry.log_keras_classifier(run, keras_file, tracking_uri=uri)
    finally:
        mlflow_logger.removeHandler(handler)
    printed = capfd.readouterr().err
    assert "Downloading artifacts" not in printed and "\r" not in printed
    assert "\x1b[" not in printed  # no colour codes
    assert [f"{r.name}: {r.getMessage()}" for r in handler.records] == []
    shown = [f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert shown == []

    info = mlflow.models.get_model_info(model_uri)
    pyfunc = info.flavors["python_function"]
    assert "model_code_path" in pyfunc and "python_model" not in pyfunc  # code, no pickle
    assert info.saved_input_example_info is not None
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    served = mlflow.pyfunc.load_model(model_uri)
    expected = [CLASS_NAMES[i] for i in predict_batch(model, images)]
    assert list(served.predict(images)) == expected
    # relabel predict's registry path: the Keras model inside the pyfunc.
    inner = served.unwrap_python_model().keras_model
    assert list(predict_batch(inner, images)) == list(predict_batch(model, images))


@pytest.mark.parametrize("layout", ["checkout", "wheel"])
def test_serving_code_is_relabel_with_its_tasks_in_either_install_layout(
        layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """log_keras_classifier ships this folder as the model's code, so a serving environment
    imports relabel and relabel.tasks from it. From a checkout tasks/ sits beside relabel/;
    from a wheel install tasks/ and flows/ sit inside it, and a top-level tasks/ beside it
    would be some other project's."""
    from relabel import registry

    if layout == "wheel":
        site = installed_layout(tmp_path / "site")
        (site / "tasks").mkdir()
        (site / "tasks" / "__init__.py").write_text('"""Another project\'s tasks."""\n')
        monkeypatch.setattr(registry, "PACKAGE_DIR", site / "relabel")
        monkeypatch.setattr(registry, "TASKS_DIR", site / "relabel" / "tasks")
    code = registry._serving_code(tmp_path / "code")

    # relabel's own modules and the task modules, each once; no flows, no foreign tasks.
    expected = sorted([p.relative_to(ROOT / "relabel").as_posix()
                       for p in (ROOT / "relabel").rglob("*.py")]
                      + [f"tasks/{p.relative_to(ROOT / 'tasks').as_posix()}"
                         for p in (ROOT / "tasks").rglob("*.py")])
    assert sorted(p.relative_to(code).as_posix() for p in code.rglob("*.py")) == expected
    # What the pyfunc imports resolves inside the folder, with only it on the path (and not
    # through this checkout's editable install).
    origins = run_in_copy(code.parent, (
        "import importlib.util, json\n"
        "print(json.dumps([importlib.util.find_spec(name).origin for name in\n"
        "    ('relabel.registry', 'relabel.tasks.train', 'relabel.tasks.predict')]))"),
        cwd=tmp_path)
    assert origins == [str(code / "registry.py"), str(code / "tasks" / "train.py"),
                       str(code / "tasks" / "predict.py")]
