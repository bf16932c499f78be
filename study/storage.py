"""Shared storage: a study directory or cache on a local/NFS path, or under an ``s3://`` or ``gs://`` URI.

Everything here goes through ``pyarrow.fs`` (the same layer Ray Tune uses for its ``storage_path``), so
one filesystem object serves the driver, Ray Tune's experiment state and trial checkpoints.

* ``is_uri(path)``: an object-store URI (``s3://``, ``gs://``/``gcs://``) rather than a local or NFS path.
* ``open_fs(uri)``: ``(pyarrow filesystem, path inside it)``. Credentials come only from the environment
  (the AWS SDK chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance role;
  Google's application-default credentials). Endpoint overrides for S3-compatible stores (MinIO, Ceph,
  a test server): ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; for a GCS emulator:
  ``STORAGE_EMULATOR_HOST``. Region: ``AWS_REGION``/``AWS_DEFAULT_REGION``, else the bucket's own.
* ``check(uri, option)``: the scheme is known, the endpoint answers and the bucket exists, else a
  ``StudyInputError`` naming the option and the fix (nothing is written).
* files and folders: ``exists``, ``read_text``/``write_text``, ``upload_file``/``download_file``,
  ``upload_dir``/``download_dir``, ``delete``, ``join``.
* ``local_mirror(uri)``: the node-local folder that mirrors ``uri`` (the driver's working copy of a
  study, a node's copy of cached encoders), under ``$STUDY_NODE_CACHE`` (default ``~/.cache/study``).
* ``Claim``: a marker object that lets one of several nodes do a job (train an encoder) while the others
  wait for its result; best effort, see its docstring.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import tempfile
import time
import uuid
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from study.tuning.errors import StudyInputError

#: URI schemes this module opens (pyarrow spells Google Cloud Storage both ways)
SCHEMES = ("s3", "gs", "gcs")


def is_uri(path: str | os.PathLike | None) -> bool:
    """True for an object-store URI (``s3://``, ``gs://``); False for a local or NFS path (``file://`` too)."""
    if path is None:
        return False
    text = str(path)
    return "://" in text and not text.startswith("file://")


def as_path(location: str) -> str:
    """A ``file://`` URI as the local path it names (``file:///nfs/studies`` -> ``/nfs/studies``); anything
    else unchanged."""
    if location.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(location).path) or "/"
    return location


def scheme_of(uri: str) -> str:
    return str(uri).split("://", 1)[0].lower()


def join(uri: str, *parts: str) -> str:
    out = str(uri).rstrip("/")
    for p in parts:
        out += "/" + str(p).strip("/")
    return out


def _split(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of ``uri``; the key has no leading or trailing slash."""
    u = urlparse(str(uri))
    return u.scheme.lower(), u.netloc, u.path.strip("/")


def _endpoint(scheme: str) -> tuple[str | None, str | None]:
    """(host[:port], http|https) of an endpoint override from the environment, or (None, None)."""
    if scheme == "s3":
        url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    else:
        url = os.environ.get("STORAGE_EMULATOR_HOST")
    if not url:
        return None, None
    if "://" not in url:
        url = "http://" + url if scheme != "s3" else "https://" + url
    u = urlparse(url)
    return u.netloc, u.scheme


@lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str, endpoint: str | None, http: str | None, region: str | None, attempts: int):
    import pyarrow.fs as pafs

    if scheme == "s3":
        if region is None and endpoint is None:
            region = pafs.resolve_s3_region(bucket)  # a real AWS bucket: talk to its region directly
        return pafs.S3FileSystem(
            region=region or "us-east-1",
            endpoint_override=endpoint,
            scheme=http,
            connect_timeout=5,
            request_timeout=60,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
        )
    kwargs = {}
    if endpoint:  # an emulator: plain HTTP and no credentials
        kwargs.update(endpoint_override=endpoint, scheme=http or "http", anonymous=True)
    # pyarrow wants a timedelta here (a float raises TypeError on every gs:// launch)
    return pafs.GcsFileSystem(retry_time_limit=None if attempts > 1 else timedelta(seconds=5), **kwargs)


def open_fs(uri: str, attempts: int = 5):
    """``(filesystem, path)`` for ``uri``; ``path`` is ``bucket/key`` (what pyarrow and Ray take along
    with the filesystem). A local path gives pyarrow's LocalFileSystem and the absolute path."""
    import pyarrow.fs as pafs

    if not is_uri(uri):
        p = str(uri)[len("file://") :] if str(uri).startswith("file://") else str(uri)
        return pafs.LocalFileSystem(), str(Path(p).expanduser().resolve())
    scheme, bucket, key = _split(uri)
    if scheme not in SCHEMES:
        raise ValueError(f"{uri}: unknown storage scheme {scheme!r} (allowed: s3://, gs://, or a path)")
    endpoint, http = _endpoint("s3" if scheme == "s3" else "gs")
    region = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")) if scheme == "s3" else None
    fs = _filesystem("s3" if scheme == "s3" else "gs", bucket, endpoint, http, region, attempts)
    return fs, f"{bucket}/{key}".rstrip("/")


def check(uri: str, option: str = "--storage") -> None:
    """Raise ``StudyInputError`` unless ``uri`` can be used: a known scheme, a reachable endpoint, an
    existing bucket. Writes nothing."""
    scheme, bucket, _ = _split(uri)
    if scheme not in SCHEMES:
        raise StudyInputError(
            f"{option} {uri}: unknown storage scheme {scheme + '://'!r}; use s3://BUCKET/PREFIX, "
            "gs://BUCKET/PREFIX, or a local/NFS directory"
        )
    if not bucket:
        raise StudyInputError(f"{option} {uri}: no bucket; write it as {scheme}://BUCKET/PREFIX")
    import pyarrow.fs as pafs

    endpoint, _ = _endpoint("s3" if scheme == "s3" else "gs")
    where = f" at {endpoint}" if endpoint else ""
    env = "AWS_ENDPOINT_URL" if scheme == "s3" else "STORAGE_EMULATOR_HOST"
    try:
        fs, _ = open_fs(uri, attempts=1)
        info = fs.get_file_info(bucket)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise StudyInputError(
            f"{option} {uri}: cannot reach the object store{where} ({first}); check the endpoint ({env}), the "
            "network and the credentials in the environment, or use a local/NFS directory"
        ) from e
    if info.type == pafs.FileType.NotFound:
        raise StudyInputError(
            f"{option} {uri}: bucket {bucket!r} does not exist{where}; create it "
            f"(e.g. `aws s3 mb {scheme}://{bucket}`) or name an existing one"
        )


# -- objects and folders -------------------------------------------------------------------------------


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = open_fs(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = open_fs(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def has_children(uri: str) -> bool:
    """Whether anything is stored under the folder ``uri``."""
    import pyarrow.fs as pafs

    fs, path = open_fs(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return False
    return bool(fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False)))


def list_files(uri: str) -> list[str]:
    """Paths (relative to ``uri``) of every file under the folder ``uri``."""
    import pyarrow.fs as pafs

    fs, path = open_fs(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
    return sorted(i.path[len(path) :].lstrip("/") for i in infos if i.type == pafs.FileType.File)


def read_bytes(uri: str) -> bytes:
    fs, path = open_fs(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode()


def write_bytes(uri: str, data: bytes) -> None:
    """One object (or, on a path, a file replaced atomically)."""
    if not is_uri(uri):
        p = Path(open_fs(uri)[1])
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return
    fs, path = open_fs(uri)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode())


def upload_file(local: str | Path, uri: str) -> None:
    fs, path = open_fs(uri)
    if not is_uri(uri):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, path)
        return
    with open(local, "rb") as src, fs.open_output_stream(path) as dst:
        shutil.copyfileobj(src, dst, 8 << 20)


def download_file(uri: str, local: str | Path) -> None:
    """Copy ``uri`` to ``local`` (replaced atomically: a reader never sees half a file)."""
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    fs, path = open_fs(uri)
    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with fs.open_input_stream(path) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)


def upload_dir(local: str | Path, uri: str, last: str | None = None) -> None:
    """Every file under ``local`` to the folder ``uri``; ``last`` (a relative name) is written after all
    the others, so its presence means the folder is complete."""
    files = sorted(p for p in Path(local).rglob("*") if p.is_file())
    if last is not None:
        files.sort(key=lambda p: p.relative_to(local).as_posix() == last)
    for p in files:
        upload_file(p, join(uri, p.relative_to(local).as_posix()))


def download_dir(uri: str, local: str | Path) -> list[str]:
    """Every file under the folder ``uri`` into ``local``; returns their relative paths."""
    names = list_files(uri)
    for name in names:
        download_file(join(uri, name), Path(local) / name)
    return names


def delete(uri: str) -> None:
    """Remove the file or folder ``uri`` (nothing if it is not there)."""
    import pyarrow.fs as pafs

    fs, path = open_fs(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)


def sqlite_problem(db: Path) -> str | None:
    """None when ``db`` (if it exists) opens read-only as an SQLite database and its schema reads; else
    why not (a truncated copy, a file that is not a database)."""
    if not Path(db).is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.Error as e:
        return str(e)
    return None


def snapshot_sqlite(db: Path, out: Path) -> None:
    """A consistent copy of a live sqlite database (its WAL included), through sqlite's backup API."""
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def upload_sqlite(db: Path, uri: str) -> None:
    with tempfile.TemporaryDirectory(prefix="study-sqlite-") as d:
        snap = Path(d) / db.name
        snapshot_sqlite(db, snap)
        upload_file(snap, uri)


# -- node-local folders ------------------------------------------------------------------------------


def node_root() -> Path:
    """This node's own cache folder (``$STUDY_NODE_CACHE``, default ``~/.cache/study``)."""
    return Path(os.environ.get("STUDY_NODE_CACHE") or "~/.cache/study").expanduser().resolve()


def local_mirror(uri: str) -> Path:
    """The node-local folder that mirrors ``uri`` (same layout; deterministic, so a restarted driver or a
    retried trial on the same node finds what it had)."""
    scheme, bucket, key = _split(uri)
    return node_root() / "mirror" / scheme / bucket / key


def node_data_cache(data_cache: str | None) -> str:
    """The decoded-dataset cache a trial uses: the configured local/NFS path, else this node's own."""
    return str(Path(data_cache).expanduser()) if data_cache else str(node_root() / "data")


# -- a claim on a job, for object stores ---------------------------------------------------------------


class Claim:
    """A marker object ``uri`` (JSON: owner, token, heartbeat time) saying who is doing a job.

    ``acquire()`` takes the claim when there is none, when it is stale (no heartbeat for ``stale_after``
    seconds: its holder died) or when it is already ``owner``'s (a retried Ray trial keeps its id); it
    writes its token, waits ``settle`` seconds and reads the marker back: of several nodes that race,
    the last writer wins and the others see its token and wait. Object stores have no compare-and-swap
    that pyarrow exposes, so this is best effort: two nodes both train only if one's write reaches the
    store more than ``settle`` seconds after the other read it back. They then write identical content
    under the same key, so the result is still correct; only the compute is spent twice.
    """

    def __init__(
        self, uri: str, owner: str | None = None, stale_after: float | None = None, settle: float | None = None
    ) -> None:
        self.uri = uri
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.stale_after = float(
            stale_after if stale_after is not None else os.environ.get("STUDY_CLAIM_STALE_S", 1800)
        )
        self.settle = float(settle if settle is not None else os.environ.get("STUDY_CLAIM_SETTLE_S", 2))
        self.token = uuid.uuid4().hex

    def read(self) -> dict | None:
        try:
            return json.loads(read_text(self.uri))
        except (FileNotFoundError, ValueError):
            return None
        except OSError:
            if not exists(self.uri):
                return None
            raise

    def held_by_other(self) -> bool:
        cur = self.read()
        return bool(
            cur and cur.get("owner") != self.owner and time.time() - float(cur.get("heartbeat", 0)) < self.stale_after
        )

    def _write(self) -> None:
        write_text(
            self.uri,
            json.dumps(
                {"owner": self.owner, "token": self.token, "heartbeat": time.time(), "host": socket.gethostname()}
            ),
        )

    def acquire(self) -> bool:
        if self.held_by_other():
            return False
        self._write()
        time.sleep(self.settle)
        cur = self.read()
        return bool(cur and cur.get("token") == self.token)

    def heartbeat(self) -> None:
        self._write()

    def release(self) -> None:
        cur = self.read()
        if cur and cur.get("token") == self.token:
            delete(self.uri)


def mlflow_env(uri: str) -> None:
    """Point MLflow's artifact clients at the same endpoint as pyarrow (an S3-compatible store given by
    ``AWS_ENDPOINT_URL[_S3]``; MLflow reads ``MLFLOW_S3_ENDPOINT_URL``). Credentials stay in the environment."""
    if scheme_of(uri) == "s3":
        url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if url:
            os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", url)
