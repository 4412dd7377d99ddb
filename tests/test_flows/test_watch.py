"""The clean-labels watcher: one event per new content, from a local file or from S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from relabel.config import PipelineConfig


@pytest.mark.slow
def test_watcher_announces_each_new_content_once(
    tmp_path: Path, prefect_api: str
) -> None:
    from relabel.flows.watch import CLEAN_LABELS_UPDATED, emit_labels_updated, watch_clean_labels

    config = PipelineConfig(cache_dir=tmp_path / "cache")
    labels = tmp_path / "inbox.csv"
    assert watch_clean_labels(str(labels), config) == []  # nothing there yet
    labels.write_text("image_id,label\n5,1\n")
    assert watch_clean_labels(str(labels), config) == [str(labels.resolve())]
    assert watch_clean_labels(str(labels), config) == []  # same content: no new event
    labels.write_text("image_id,label\n5,1\n6,2\n")
    assert watch_clean_labels(str(labels), config) == [str(labels.resolve())]

    event = emit_labels_updated(str(labels), config, "abc")
    assert event is not None and event.event == CLEAN_LABELS_UPDATED
    assert event.resource.id.startswith("relabel.clean-labels.")
    assert PipelineConfig.model_validate(event.payload["config"]) == config


@pytest.mark.slow
def test_watcher_reads_labels_from_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str
) -> None:
    """An S3 prefix of label CSVs on a real S3-compatible store (SeaweedFS on 127.0.0.1):
    each new or rewritten CSV is announced once. (The retrain flow's download of one such
    object: relabel.storage.local_file, tests/test_relabel/test_storage.py.)"""
    from live_servers import SeaweedFS

    from relabel.flows.watch import watch_clean_labels

    with SeaweedFS(tmp_path / "weed", tmp_path / "weed.log") as server:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        client = server.client()
        client.create_bucket(Bucket="labels")
        client.put_object(Bucket="labels", Key="inbox/batch1.csv", Body=b"image_id,label\n5,1\n")
        client.put_object(Bucket="labels", Key="inbox/notes.txt", Body=b"not labels")
        config = PipelineConfig(cache_dir=tmp_path / "cache")
        source = "s3://labels/inbox/"
        assert watch_clean_labels(source, config) == ["s3://labels/inbox/batch1.csv"]
        assert watch_clean_labels(source, config) == []
        client.put_object(Bucket="labels", Key="inbox/batch2.csv", Body=b"image_id,label\n6,2\n")
        client.put_object(Bucket="labels", Key="inbox/batch1.csv", Body=b"image_id,label\n5,3\n")
        assert watch_clean_labels(source, config) == [
            "s3://labels/inbox/batch1.csv", "s3://labels/inbox/batch2.csv"]
