"""Object storage: `s3://bucket/prefix` wherever relabel takes a data or artifact location.

Credentials, region and endpoint come from the standard AWS chain (environment variables,
`~/.aws/config`, `AWS_PROFILE`, ...), so S3-compatible stores (SeaweedFS, MinIO, Ceph) work
by setting `AWS_ENDPOINT_URL`. Nothing here ever logs a credential: messages name the
bucket, the key and the endpoint only.

Downloads land in a content-keyed cache: the cache folder's name is a hash of the listing
(key, size and ETag of every object), so an unchanged prefix is fetched once and a changed
one gets a new folder. A folder is renamed into place only after every object arrived with
the expected size (and MD5, where the ETag is one); a failure leaves no folder behind.

Transient faults (throttling, 5xx, dropped connections) are retried with exponential
backoff by botocore's "standard" retry mode; `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE` override
it. Short connect/read timeouts make an endpoint that stops answering fail in seconds, not
minutes (`RELABEL_S3_CONNECT_TIMEOUT`, `RELABEL_S3_READ_TIMEOUT`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from relabel.fileio import atomic_directory, sha256_text, write_json_atomic

log = logging.getLogger(__name__)

MANIFEST = ".relabel-s3-manifest.json"
DEFAULT_WORKERS = 16
_CHUNK = 1 << 20


class StorageError(RuntimeError):
    """An object-storage operation failed; the message says what and where (never secrets)."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" for the whole bucket, else ends with "/" unless it names one object

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str  # without quotes; an MD5 hex digest unless it contains "-" (multipart)


def is_s3_uri(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith("s3://")


def parse_s3_uri(uri: str, *, as_prefix: bool = True) -> S3Location:
    """Split `s3://bucket/prefix`; with `as_prefix` the prefix is a folder (ends with "/")."""
    if not is_s3_uri(uri):
        raise StorageError(f"{uri!r}: not an s3:// URI")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r}: no bucket name after s3://")
    if as_prefix and prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Location(bucket, prefix)


def _endpoint_description(client: Any) -> str:
    return str(client.meta.endpoint_url)


def s3_client(max_attempts: int | None = None) -> Any:
    """A boto3 S3 client from the standard AWS configuration, with retries and timeouts.

    `max_attempts` (default `AWS_MAX_ATTEMPTS`, else 5) counts the first try.
    """
    import boto3
    from botocore.config import Config

    attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS", "5"))
    config = Config(
        # total_max_attempts counts the first try too (botocore's "max_attempts" does not),
        # matching what AWS_MAX_ATTEMPTS means in the AWS CLI/SDKs.
        retries={"mode": os.environ.get("AWS_RETRY_MODE", "standard"),
                 "total_max_attempts": attempts},
        connect_timeout=float(os.environ.get("RELABEL_S3_CONNECT_TIMEOUT", "5")),
        read_timeout=float(os.environ.get("RELABEL_S3_READ_TIMEOUT", "30")),
        max_pool_connections=max(DEFAULT_WORKERS, 10),
        # Path-style addressing works with every S3-compatible store on a bare host:port.
        s3={"addressing_style": "path"} if os.environ.get("AWS_ENDPOINT_URL") else None,
    )
    return boto3.session.Session().client("s3", config=config)


def describe_error(exc: BaseException, what: str, client: Any | None = None) -> StorageError:
    """Translate a boto error into a StorageError that says what went wrong and how to fix it."""
    from botocore import exceptions as bex

    endpoint = f" (endpoint {_endpoint_description(client)})" if client is not None else ""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, bex.NoCredentialsError):
        return StorageError(
            f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            f"or AWS_PROFILE{endpoint}"
        )
    if isinstance(exc, bex.ConnectTimeoutError | bex.ReadTimeoutError |
                  bex.EndpointConnectionError | bex.ConnectionClosedError |
                  bex.ResponseStreamingError | bex.IncompleteReadError):
        return StorageError(
            f"{what}: the S3 endpoint is not answering{endpoint}: {type(exc).__name__}; "
            "check AWS_ENDPOINT_URL and that the server is running"
        )
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return StorageError(f"{what}: bucket does not exist{endpoint}")
        if code in ("NoSuchKey", "404") or status == 404:
            return StorageError(f"{what}: object not found{endpoint}")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                    "InvalidToken", "ExpiredToken", "403") or status == 403:
            return StorageError(
                f"{what}: access denied ({code or status}): the credentials were rejected or "
                f"lack permission; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY{endpoint}"
            )
        return StorageError(f"{what}: S3 error {code or status}{endpoint}: "
                            f"{error.get('Message', '')}")
    if isinstance(exc, bex.BotoCoreError):
        return StorageError(f"{what}: {type(exc).__name__}: {exc}{endpoint}")
    if isinstance(exc, OSError):
        return StorageError(f"{what}: local I/O error: {exc}")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


def list_prefix(uri: str, client: Any | None = None) -> list[S3Object]:
    """Every object under `uri` (folder markers excluded), sorted by key."""
    return _list(parse_s3_uri(uri), client or s3_client())


def _list(location: S3Location, client: Any) -> list[S3Object]:
    objects: list[S3Object] = []
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith("/"):
                    continue  # "folder" placeholder objects some tools create
                objects.append(
                    S3Object(item["Key"], int(item["Size"]), str(item["ETag"]).strip('"'))
                )
    except Exception as exc:  # noqa: BLE001 - translated into a clear StorageError
        raise describe_error(exc, f"listing {location.uri}", client) from exc
    return sorted(objects, key=lambda o: o.key)


def prefix_fingerprint(uri: str, client: Any | None = None) -> str:
    """SHA-256 over (relative key, size, ETag) of every object under `uri`.

    Changes whenever an object is added, removed or rewritten with new content; cheap (one
    listing, no downloads), so a watcher can poll it.
    """
    location = parse_s3_uri(uri)
    return _fingerprint(location, list_prefix(uri, client))


def _fingerprint(location: S3Location, objects: Iterable[S3Object]) -> str:
    lines = [f"{o.key[len(location.prefix):]}\t{o.size}\t{o.etag}" for o in objects]
    return sha256_text("\n".join(lines))


def _relative_path(location: S3Location, key: str) -> PurePosixPath:
    relative = PurePosixPath(key[len(location.prefix):])
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise StorageError(f"s3://{location.bucket}/{key}: unsafe key for a local path")
    return relative


def fetch_prefix(
    uri: str,
    cache_dir: str | os.PathLike[str],
    workers: int = DEFAULT_WORKERS,
    client: Any | None = None,
) -> Path:
    """Download every object under `uri` into a content-keyed folder of `cache_dir`.

    Returns the local folder, laid out like the prefix (`s3://b/data/images/00001.png` ->
    `FOLDER/images/00001.png`); a URI naming one object gives a folder holding just that
    file under its own name. A second call with unchanged objects costs one listing.
    Raises StorageError (bucket missing, prefix empty, credentials rejected, endpoint down,
    object changed or truncated during download); the cache then holds no partial folder.
    """
    location = parse_s3_uri(uri)
    client = client or s3_client()
    objects = _list(location, client)
    if not objects and not uri.endswith("/"):
        # `uri` may name one object (s3://bucket/labels/new.csv): fetch just that file.
        folder, matches = _one_object(uri, client)
        if matches:
            location, objects = folder, matches
    if not objects:
        raise StorageError(f"{location.uri}: no object or objects under this prefix "
                           f"(endpoint {_endpoint_description(client)})")
    return _fetch(location, objects, cache_dir, workers, client)


def _one_object(uri: str, client: Any) -> tuple[S3Location, list[S3Object]]:
    """The object `uri` names by its exact key, as (the location of its folder, [it]), or
    (that location, []) when there is none; a listing, because "key" may be a prefix of
    others (labels.csv, labels.csv.bak)."""
    exact = parse_s3_uri(uri, as_prefix=False)
    parent = exact.prefix.rsplit("/", 1)[0] + "/" if "/" in exact.prefix else ""
    matches = [o for o in _list(exact, client) if o.key == exact.prefix] if exact.prefix else []
    return S3Location(exact.bucket, parent), matches


def _fetch(location: S3Location, objects: list[S3Object], cache_dir: str | os.PathLike[str],
           workers: int, client: Any) -> Path:
    """Download `objects` (listed under `location`) into their content-keyed folder of
    `cache_dir`, unless a complete copy is already there."""
    fingerprint = _fingerprint(location, objects)
    destination = Path(cache_dir) / f"{location.bucket}-{fingerprint[:20]}"
    if (destination / MANIFEST).is_file():
        log.info("%s: cached at %s", location.uri, destination)
        return destination

    started = time.perf_counter()
    total_bytes = sum(o.size for o in objects)
    try:
        with atomic_directory(destination) as tmp:
            paths = [tmp / _relative_path(location, o.key) for o in objects]
            for folder in {p.parent for p in paths}:
                folder.mkdir(parents=True, exist_ok=True)
            _run_all(lambda pair: _download(client, location, *pair),
                     list(zip(objects, paths, strict=True)), workers)
            write_json_atomic(tmp / MANIFEST, {
                "uri": location.uri,
                "fingerprint": fingerprint,
                "objects": [[o.key, o.size, o.etag] for o in objects],
            })
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise describe_error(exc, f"downloading {location.uri}", client) from exc
    seconds = time.perf_counter() - started
    log.info("%s: fetched %d objects (%.1f MB) in %.1f s -> %s", location.uri, len(objects),
             total_bytes / 1e6, seconds, destination)
    return destination


def _download(client: Any, location: S3Location, obj: S3Object, path: Path) -> None:
    """One object to `path`, checking size and (single-part ETag) MD5."""
    what = f"s3://{location.bucket}/{obj.key}"
    try:
        response = client.get_object(Bucket=location.bucket, Key=obj.key)
        md5 = hashlib.md5(usedforsecurity=False)
        written = 0
        with open(path, "wb") as handle:
            for chunk in response["Body"].iter_chunks(_CHUNK):
                md5.update(chunk)
                handle.write(chunk)
                written += len(chunk)
    except Exception as exc:  # noqa: BLE001
        raise describe_error(exc, f"downloading {what}", client) from exc
    if written != obj.size:
        raise StorageError(f"{what}: got {written} bytes, listing said {obj.size} "
                           "(object changed during download?)")
    if "-" not in obj.etag and len(obj.etag) == 32 and md5.hexdigest() != obj.etag:
        raise StorageError(f"{what}: MD5 {md5.hexdigest()} does not match ETag {obj.etag} "
                           "(object changed or corrupted in transit)")


def _run_all(function: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    """`function` over `items` on a thread pool; the first failure cancels what has not
    started (no point fetching 50,000 objects from a dead endpoint) and is re-raised."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(function, item) for item in items]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return [future.result() for future in futures]


def local_folder(data: str, cache_dir: str | os.PathLike[str]) -> Path:
    """A local folder for `data`: itself, or for an `s3://` prefix its copy fetched into
    `cache_dir/s3` (unchanged objects are not downloaded again)."""
    if is_s3_uri(data):
        return fetch_prefix(data, Path(cache_dir) / "s3")
    return Path(data)


def local_file(location: str, cache_dir: str | os.PathLike[str]) -> Path:
    """A local path for the file `location`: itself, or for an `s3://bucket/key` object its
    copy fetched into `cache_dir/s3`. Each call lists the key again, so an object rewritten
    under the same key (a labels file) is downloaded anew and an unchanged one is not."""
    if not is_s3_uri(location):
        return Path(location)
    client = s3_client()
    folder, matches = _one_object(location, client)
    if not matches:
        raise StorageError(f"{location}: no object with this key (a file names one object, "
                           f"not a prefix; endpoint {_endpoint_description(client)})")
    local = _fetch(folder, matches, Path(cache_dir) / "s3", 1, client)
    return local / _relative_path(folder, matches[0].key)
