"""The records tasks pass to each other: JSON round trip, and the run's results table."""

from __future__ import annotations

from relabel.flows.artifacts import Artifact
from relabel.flows.records import DatasetRef, ModelScores, NoiseReport, PipelineSummary


def _artifact(name: str) -> Artifact:
    return Artifact(path=f"/cache/{name}.npy", sha256=name * 16)


def _scores(correct: int, total: int) -> dict:
    confusion = [[0] * 10 for _ in range(10)]
    confusion[0][0], confusion[0][1] = correct, total - correct
    return {"accuracy": correct / total, "confusion": confusion}


def _summary(test: bool) -> PipelineSummary:
    noise = NoiseReport(transition=_artifact("t"), noise_rates={"plane": 0.6},
                        overall_noise_rate=0.6, plots={})
    scores = {
        "Baseline": ModelScores(name="Baseline", validation=_scores(240, 1000),
                                test=_scores(25, 100) if test else None,
                                test_predictions=_artifact("b")),
        "Model II": ModelScores(name="Model II", validation=_scores(900, 1000),
                                test=_scores(91, 100) if test else None,
                                test_predictions=_artifact("m")),
    }
    return PipelineSummary(run_name="r", profile="smoke", data_hash="d" * 64, dataset_dir="/d",
                           cache_dir="/c", clean_labels_sha256="e" * 64, config={},
                           counts={"validation": 1000}, noise=noise, scores=scores)


def test_records_survive_a_json_round_trip() -> None:
    dataset = DatasetRef(content_hash="c" * 64, directory="/d", images=_artifact("i"),
                         noisy_labels=_artifact("n"), clean_labels=_artifact("c"),
                         summary={"num_images": 50})
    again = DatasetRef.model_validate_json(dataset.model_dump_json())
    assert again == dataset and again.num_images == 50
    summary = _summary(test=True)
    assert PipelineSummary.model_validate_json(summary.model_dump_json()) == summary


def test_the_results_table_gives_accuracy_with_its_standard_error() -> None:
    table = _summary(test=False).results_table().splitlines()
    assert table[0].split() == ["model", "validation", "(held-out", "clean)"]
    # 90% of 1,000: SE = sqrt(0.9 * 0.1 / 1000) = 0.95 points
    assert table[2].split() == ["Model", "II", "90.0%", "±", "0.9"]
    assert table[1].split() == ["Baseline", "24.0%", "±", "1.4"]
    with_test = _summary(test=True)
    assert "test folder" in with_test.results_table().splitlines()[0]
    assert with_test.headline() == {
        "Baseline validation accuracy": 0.24, "Model II validation accuracy": 0.9,
        "Baseline test accuracy": 0.25, "Model II test accuracy": 0.91}


def test_a_production_run_reports_the_test_folder_only() -> None:
    summary = _summary(test=True)
    for score in summary.scores.values():
        score.validation = None  # validation_size 0: no validation images
    table = summary.results_table().splitlines()
    assert table[0].split() == ["model", "test", "folder"]
    assert table[2].split() == ["Model", "II", "91.0%", "±", "2.9"]
    assert summary.headline() == {"Baseline test accuracy": 0.25, "Model II test accuracy": 0.91}
    assert summary.scores["Model II"].heldout() == ("test", summary.scores["Model II"].test)
    assert ModelScores(name="Model II").heldout() is None
    for score in summary.scores.values():
        score.test = None  # and no labelled test folder: nothing measured the run
    assert summary.results_table().startswith("no accuracy to report: a production run")
    assert summary.headline() == {}
    assert _summary(test=True).scores["Baseline"].heldout()[0] == "validation"
