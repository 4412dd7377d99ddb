"""s3:// data locations against a real S3-compatible server (SeaweedFS on 127.0.0.1).

Round trip, content-keyed cache, the `relabel ingest s3://...` path, and the faults a user
meets: missing bucket, a key that vanishes mid-download, wrong credentials, and the endpoint
dying mid-download (clear error, retried with backoff, no half-written cache, recovers).
"""

from __future__ import annotations

import filecmp
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_servers import SECRET_KEY, SeaweedFS
from typer.testing import CliRunner

from relabel import storage
from relabel.storage import StorageError, fetch_prefix, prefix_fingerprint, s3_client
from relabel.tasks.demodata import generate_demo_data
from relabel.tasks.ingest import ingest

pytestmark = pytest.mark.slow
BUCKET = "relabel-data"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    root = tmp_path_factory.mktemp("seaweedfs")
    server = SeaweedFS(root / "data", root / "weed.log")
    with server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture()
def s3_env(s3_server: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The user's environment for this store; two attempts keep fault tests short."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RELABEL_S3_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("RELABEL_S3_READ_TIMEOUT", "5")
    return s3_server


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo_data(
        tmp_path_factory.mktemp("demo") / "data", num_train=120, num_clean=40, num_test=30
    )


def _upload(demo_dir: Path, prefix: str) -> str:
    client = s3_client()
    for path in sorted(p for p in demo_dir.rglob("*") if p.is_file()):
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(demo_dir).as_posix()}")
    return f"s3://{BUCKET}/{prefix}"


def _wait_until_readable(server: SeaweedFS, prefix: str, timeout: float = 60) -> None:
    """A restarted SeaweedFS answers 500 until its volumes re-register with the master
    (botocore's retry quota rightly stops a parallel fetch from retrying that for long)."""
    client = server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    deadline = time.monotonic() + timeout
    for key in keys:
        while True:
            try:
                client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                break
            except Exception:  # noqa: BLE001 - still recovering
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


def _cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _count_calls(client, operation: str) -> list[str]:
    """Every HTTP attempt (retries included) of `operation`, as its URL."""
    calls: list[str] = []

    def record(request, **_: object) -> None:
        calls.append(request.url)

    client.meta.events.register(f"before-send.s3.{operation}", record)
    return calls


def test_parse_s3_uri() -> None:
    assert storage.parse_s3_uri("s3://b/x/y").prefix == "x/y/"
    assert storage.parse_s3_uri("s3://b").prefix == ""
    assert storage.parse_s3_uri("s3://b/x/y", as_prefix=False).prefix == "x/y"
    with pytest.raises(StorageError, match="no bucket"):
        storage.parse_s3_uri("s3:///x")
    with pytest.raises(StorageError, match="not an s3"):
        storage.parse_s3_uri("/local/path")


def test_fetch_round_trip_and_content_keyed_cache(s3_env, demo_dir: Path, tmp_path: Path):
    uri = _upload(demo_dir, "round-trip")
    cache = tmp_path / "cache"
    local = fetch_prefix(uri, cache)
    compared = filecmp.dircmp(demo_dir, local)
    assert not compared.left_only and not compared.diff_files
    for sub in ("images", "images_test"):
        files = sorted(p.name for p in (demo_dir / sub).iterdir())
        _, mismatch, errors = filecmp.cmpfiles(demo_dir / sub, local / sub, files, shallow=False)
        assert not mismatch and not errors

    # Same data from S3 and from disk: same content hash, so the same dataset artifact.
    from_s3 = ingest(local, tmp_path / "ingest-s3")
    from_disk = ingest(demo_dir, tmp_path / "ingest-disk")
    assert from_s3.content_hash == from_disk.content_hash

    # Unchanged prefix: served from the cache with one listing and no downloads.
    client = storage.s3_client()
    gets = _count_calls(client, "GetObject")
    assert fetch_prefix(uri, cache, client=client) == local
    assert gets == []

    # A rewritten object changes the fingerprint and lands in a new folder.
    before = prefix_fingerprint(uri)
    s3_env.client().put_object(Bucket=BUCKET, Key="round-trip/noisy_labels.csv",
                               Body=(demo_dir / "noisy_labels.csv").read_bytes() + b"0\n")
    assert prefix_fingerprint(uri) != before
    changed = fetch_prefix(uri, cache)
    assert changed != local
    assert (changed / "noisy_labels.csv").read_bytes().endswith(b"0\n")


def test_cli_ingest_from_s3(s3_env, demo_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from relabel.cli import app

    uri = _upload(demo_dir, "cli")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ingest", uri, "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert '"num_images": 120' in result.output
    assert any((tmp_path / "c" / "s3").iterdir())


def test_missing_bucket_is_a_clear_error(s3_env, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no-such-bucket.*bucket does not exist"):
        fetch_prefix("s3://no-such-bucket/data", tmp_path / "cache")
    assert _cache_entries(tmp_path / "cache") == []


def test_empty_prefix_is_a_clear_error(s3_env, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="nothing-here/: no object or objects under"):
        fetch_prefix(f"s3://{BUCKET}/nothing-here", tmp_path / "cache")


def test_fetch_single_object(s3_env, demo_dir: Path, tmp_path: Path) -> None:
    """A URI naming one object (e.g. a new clean-labels CSV) gives a folder with that file;
    a sibling whose name merely starts the same is not included."""
    client = s3_env.client()
    body = (demo_dir / "clean_labels.csv").read_bytes()
    client.put_object(Bucket=BUCKET, Key="inbox/new.csv", Body=body)
    client.put_object(Bucket=BUCKET, Key="inbox/new.csv.bak", Body=b"old")
    folder = fetch_prefix(f"s3://{BUCKET}/inbox/new.csv", tmp_path / "cache")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["new.csv"]
    assert (folder / "new.csv").read_bytes() == body


def test_local_file_fetches_one_object_again_when_rewritten(s3_env, tmp_path: Path) -> None:
    """How the retrain flow reads a labels file: a local path is itself; an s3:// object is
    fetched by its exact key, from the cache while unchanged and anew once rewritten under
    the same key; a missing key or a prefix is an error that names the URL."""
    client = s3_env.client()
    cache = tmp_path / "cache"
    assert storage.local_file("inbox/new.csv", cache) == Path("inbox/new.csv")
    client.put_object(Bucket=BUCKET, Key="labels-in/batch1.csv", Body=b"image_id,label\n5,1\n")
    client.put_object(Bucket=BUCKET, Key="labels-in/batch1.csv.bak", Body=b"old")
    uri = f"s3://{BUCKET}/labels-in/batch1.csv"
    first = storage.local_file(uri, cache)
    assert first.name == "batch1.csv" and first.read_text() == "image_id,label\n5,1\n"
    assert sorted(p.name for p in first.parent.iterdir()) == [storage.MANIFEST, "batch1.csv"]
    assert storage.local_file(uri, cache) == first
    client.put_object(Bucket=BUCKET, Key="labels-in/batch1.csv", Body=b"image_id,label\n5,3\n")
    rewritten = storage.local_file(uri, cache)
    assert rewritten != first and rewritten.read_text() == "image_id,label\n5,3\n"
    for wrong in (f"s3://{BUCKET}/labels-in/missing.csv", f"s3://{BUCKET}/labels-in/"):
        with pytest.raises(StorageError, match=re.escape(wrong)):
            storage.local_file(wrong, cache)


def test_key_vanishing_mid_download_leaves_no_cache(s3_env, demo_dir, tmp_path) -> None:
    uri = _upload(demo_dir, "vanishing")
    admin = s3_env.client()
    client = storage.s3_client()
    victim = "vanishing/images/00005.png"

    def delete_after_listing(**_: object) -> None:
        admin.delete_object(Bucket=BUCKET, Key=victim)

    client.meta.events.register("after-call.s3.ListObjectsV2", delete_after_listing)
    with pytest.raises(StorageError, match=f"{victim}: object not found"):
        fetch_prefix(uri, tmp_path / "cache", client=client)
    assert _cache_entries(tmp_path / "cache") == []  # no folder, no temp leftovers


def test_wrong_credentials_are_a_clear_error_without_secrets(
    s3_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    caplog.set_level(logging.DEBUG, logger="relabel")
    with pytest.raises(StorageError, match="access denied.*credentials") as info:
        fetch_prefix(f"s3://{BUCKET}/round-trip", tmp_path / "cache")
    assert "not-the-secret" not in str(info.value) and SECRET_KEY not in str(info.value)
    assert "not-the-secret" not in caplog.text
    assert _cache_entries(tmp_path / "cache") == []


def test_endpoint_dying_mid_download(s3_env: SeaweedFS, demo_dir, tmp_path) -> None:
    """Server killed after a few objects: clear error after retries, no partial cache; once
    the server is back the same call succeeds."""
    uri = _upload(demo_dir, "dying")
    cache = tmp_path / "cache"
    client = storage.s3_client()
    gets = _count_calls(client, "GetObject")
    done = [0]

    def kill_after_three(**_: object) -> None:
        done[0] += 1
        if done[0] == 3:
            s3_env.kill()

    client.meta.events.register("after-call.s3.GetObject", kill_after_three)
    try:
        with pytest.raises(StorageError, match="not answering") as info:
            fetch_prefix(uri, cache, workers=1, client=client)
        assert "AWS_ENDPOINT_URL" in str(info.value)
        # 3 GETs succeeded; the 4th object was attempted AWS_MAX_ATTEMPTS=2 times (retried
        # with backoff) before giving up, and the rest were cancelled, not hammered.
        assert gets.count(gets[3]) == 2 and gets[4] == gets[3]
        assert len(gets) <= 3 + 2 * 2
        assert _cache_entries(cache) == []
    finally:
        s3_env.start()
    _wait_until_readable(s3_env, "dying/")
    local = fetch_prefix(uri, cache)
    assert filecmp.cmp(local / "noisy_labels.csv", demo_dir / "noisy_labels.csv", shallow=False)
    assert _cache_entries(cache) == [local.name]
