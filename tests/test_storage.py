"""study.storage against a real S3-compatible server on 127.0.0.1 (moto, in-process): URIs, objects and
folders, sqlite snapshots, the claim marker, the encoder cache on a bucket, and bad --storage URIs (exit 2,
nothing written). gs:// is checked only as far as pyarrow's GcsFileSystem with an emulator endpoint: no
GCS server or emulator runs here."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from study import storage as st
from tests.conftest import SMOKE, free_port

moto_server = pytest.importorskip("moto.server")

S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """An S3 server on 127.0.0.1 (moto's, in a thread), with the environment pointing at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env["AWS_ENDPOINT_URL"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def make_bucket(name: str) -> str:
    import boto3

    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture
def node(tmp_path, monkeypatch):
    """This 'node's own cache folder."""
    monkeypatch.setenv("STUDY_NODE_CACHE", str(tmp_path / "node"))
    return tmp_path / "node"


def test_uri_helpers(node):
    assert st.is_uri("s3://b/p") and st.is_uri("gs://b/p") and not st.is_uri("/nfs/studies")
    assert not st.is_uri("file:///tmp/x") and not st.is_uri(None) and not st.is_uri(Path("rel/dir"))
    assert st.join("s3://b/p/", "tune", "/lnl/") == "s3://b/p/tune/lnl"
    assert st.local_mirror("s3://b/studies/x") == node / "mirror" / "s3" / "b" / "studies" / "x"
    assert st.node_data_cache("") == str(node / "data") and st.node_data_cache("/nfs/data") == "/nfs/data"
    fs, path = st.open_fs("relative/dir")
    assert fs.type_name == "local" and path == str(Path("relative/dir").resolve())


def test_a_file_uri_is_the_local_path_it_names(tmp_path):
    from study.tuning.studydir import normalize, study_location

    assert st.as_path("file:///nfs/studies") == "/nfs/studies" and st.as_path("/nfs/x") == "/nfs/x"
    assert st.as_path("file:///tmp/a%20b") == "/tmp/a b" and st.as_path("s3://b/p") == "s3://b/p"
    assert normalize(f"file://{tmp_path}/s") == str(tmp_path / "s")  # not a folder named "file:"
    assert study_location(f"file://{tmp_path}", "--storage", "x") == str(tmp_path / "x")


def test_gs_uri_resolves_to_pyarrow_gcs_with_emulator_endpoint(monkeypatch):
    import pyarrow.fs as pafs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    for uri in ("gs://bkt/studies/x", "gcs://bkt/studies/x"):
        fs, path = st.open_fs(uri)
        assert isinstance(fs, pafs.GcsFileSystem) and path == "bkt/studies/x"
    # the one-attempt filesystem (the launch's first check of a gs:// root) limits its retries in time:
    # pyarrow takes a timedelta there, and a float made every gs:// launch fail with a TypeError
    fs, _ = st.open_fs("gs://bkt/studies/y", attempts=1)
    assert isinstance(fs, pafs.GcsFileSystem)


def test_objects_folders_and_sqlite_roundtrip(s3, tmp_path):
    root = make_bucket("roundtrip") + "/p"
    st.write_text(f"{root}/a/b.txt", "hello")
    assert st.read_text(f"{root}/a/b.txt") == "hello" and st.is_file(f"{root}/a/b.txt")
    assert st.exists(f"{root}/a") and not st.is_file(f"{root}/a") and not st.exists(f"{root}/nope")
    assert st.has_children(root) and not st.has_children(f"{root}/nope")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("z.pt", "a.json", "sub/c.json"):
        (src / name).write_text(name)
    order = []
    real = st.upload_file
    try:
        st.upload_file = lambda local, uri: (order.append(Path(local).name), real(local, uri))
        st.upload_dir(src, f"{root}/dir", last="z.pt")
    finally:
        st.upload_file = real
    assert order[-1] == "z.pt"  # the completion marker goes last
    assert st.list_files(f"{root}/dir") == ["a.json", "sub/c.json", "z.pt"]
    assert sorted(st.download_dir(f"{root}/dir", tmp_path / "dst")) == ["a.json", "sub/c.json", "z.pt"]
    assert (tmp_path / "dst" / "sub" / "c.json").read_text() == "sub/c.json"
    st.delete(f"{root}/dir")
    assert not st.exists(f"{root}/dir/a.json")
    # a live sqlite database goes up as a consistent snapshot
    db = tmp_path / "live.db"
    con = sqlite3.connect(db)
    con.execute("create table t (x)")
    con.executemany("insert into t values (?)", [(i,) for i in range(100)])
    con.commit()
    st.upload_sqlite(db, f"{root}/live.db")
    con.close()
    st.download_file(f"{root}/live.db", tmp_path / "back.db")
    assert sqlite3.connect(tmp_path / "back.db").execute("select count(*) from t").fetchone() == (100,)


def test_claim_one_holder_stale_takeover_and_retry(s3):
    uri = make_bucket("claims") + "/k.claim"
    a = st.Claim(uri, "trial-a", stale_after=60, settle=0)
    b = st.Claim(uri, "trial-b", stale_after=60, settle=0)
    assert a.acquire()
    assert b.held_by_other() and not b.acquire()  # b waits for a's result
    assert st.Claim(uri, "trial-a", settle=0).acquire()  # a retried Ray trial keeps its own claim
    stale = st.Claim(uri, "trial-c", stale_after=0.0, settle=0)
    assert stale.acquire()  # no heartbeat within stale_after: the holder is taken for dead
    b.release()  # not b's: nothing happens
    assert st.exists(uri)
    stale.release()
    assert not st.exists(uri) and b.acquire()


@pytest.mark.parametrize(
    "bad, says",
    [
        ("ftp://host/studies", "unknown storage scheme 'ftp://'"),
        ("s3:///studies", "no bucket"),
        ("s3://no-such-bucket/studies", "bucket 'no-such-bucket' does not exist"),
    ],
)
def test_bad_storage_uri_is_exit_2_and_writes_nothing(s3, node, capsys, bad, says):
    from study.cli import main

    make_bucket("bad-inputs")
    assert main(["launch", str(SMOKE), "--storage", bad, "--name", "x", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--storage" in err and says in err, err
    assert not node.exists() or not any(node.rglob("*.json"))
    assert st.list_files("s3://bad-inputs") == []


def test_unreachable_endpoint_is_exit_2(monkeypatch, node, capsys):
    from study.cli import main

    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    t0 = time.perf_counter()
    assert main(["launch", str(SMOKE), "--storage", "s3://bucket/studies", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--storage s3://bucket/studies: cannot reach the object store" in err and "AWS_ENDPOINT_URL" in err, err
    assert time.perf_counter() - t0 < 20 and not node.exists()


def test_resume_of_a_uri_that_is_no_study_is_exit_2(s3, node, capsys):
    from study.cli import main

    make_bucket("empty-studies")
    assert main(["resume", "s3://empty-studies/studies/none"]) == 2
    assert "not a study directory" in capsys.readouterr().err


# -- the encoder cache on a bucket ---------------------------------------------------------------------


def ssl_request(**kw):
    from study.ssl import PretrainRequest

    base = dict(
        dataset="synthetic",
        dataset_options={"num_samples": 48, "image_size": 16},
        split_seed=0,
        method="simclr",
        hparams={},
        backbone="small_cnn",
        resolution=None,
        epochs=1,
        init="random",
        seed=0,
        batch_size=16,
    )
    return PretrainRequest(**{**base, **kw})


def test_encoder_trained_once_then_downloaded_by_another_node(s3, tmp_path, monkeypatch):
    from study.ssl import load_encoder, pretrain, read_meta

    cache = make_bucket("encoders") + "/cache"
    monkeypatch.setenv("STUDY_CLAIM_SETTLE_S", "0")
    monkeypatch.setenv("STUDY_NODE_CACHE", str(tmp_path / "node-a"))
    epochs = []
    path_a = pretrain(ssl_request(), cache, device="cpu", on_epoch=lambda e, m: epochs.append(e))
    assert epochs == [0] and path_a.is_relative_to(tmp_path / "node-a")
    files = st.list_files(cache)
    key = path_a.parent.name
    assert f"ssl/{key}/encoder.pt" in files and f"ssl/{key}/meta.json" in files
    assert not any(f.endswith(".claim") for f in files)  # released
    monkeypatch.setenv("STUDY_NODE_CACHE", str(tmp_path / "node-b"))
    path_b = pretrain(ssl_request(), cache, device="cpu", on_epoch=lambda e, m: epochs.append(e))
    assert epochs == [0], "node b downloaded the encoder instead of training it"
    assert path_b.is_relative_to(tmp_path / "node-b") and read_meta(path_b)["key"] == key
    assert load_encoder(path_b) is not None


def test_encoder_waits_for_another_nodes_claim(s3, tmp_path, monkeypatch):
    from study.ssl import pretrain

    cache = make_bucket("claimed") + "/cache"
    monkeypatch.setenv("STUDY_CLAIM_SETTLE_S", "0")
    monkeypatch.setenv("STUDY_CLAIM_POLL_S", "0.1")
    monkeypatch.setenv("STUDY_NODE_CACHE", str(tmp_path / "node"))
    req = ssl_request(seed=3)
    # find the entry key without training: a first run on a throwaway cache
    key = pretrain(req, tmp_path / "plain", device="cpu").parent.name
    other = st.Claim(f"{cache}/ssl/{key}.claim", "another-node", settle=0)
    assert other.acquire()
    epochs, out = [], {}
    t = threading.Thread(
        target=lambda: out.setdefault(
            "path", pretrain(req, cache, device="cpu", on_epoch=lambda e, m: epochs.append(e))
        )
    )
    t.start()
    time.sleep(1.0)
    assert t.is_alive() and epochs == [], "trained although another node holds the claim"
    other.release()  # the other node gave up (without a result): this one takes over and trains
    t.join(60)
    assert not t.is_alive() and epochs == [0] and out["path"].name == "encoder.pt"


# -- a study directory under a URI -------------------------------------------------------------------


def test_uri_study_dir_goes_through_the_bucket(s3, tmp_path, monkeypatch, capsys):
    import sqlite3

    from study.cli import main
    from study.tracking import default_tracking_uri
    from study.tuning.spec import load_spec
    from study.tuning.studydir import cache_locations, create_study_dir, existing_study, new_state, open_study_dir

    root = make_bucket("study-dirs") + "/studies"
    uri = f"{root}/s1"
    monkeypatch.setenv("STUDY_NODE_CACHE", str(tmp_path / "head1"))
    spec = load_spec(SMOKE)
    state = new_state(uri, str(SMOKE), cache_locations(spec, root), {}, None, None)
    assert state.artifact_location == f"{uri}/mlartifacts" and state.storage_uri == uri and state.tracking_local
    paths = create_study_dir(uri, spec, state)  # spec.yaml and state.json written here and uploaded
    local = st.local_mirror(uri)
    assert paths.dir == local and st.list_files(uri) == ["spec.yaml", "state.json"]
    con = sqlite3.connect(local / "optuna.db")
    con.execute("create table t (x)")
    con.commit()
    paths.set_stage("pretrain", "running")  # with optuna.db, uploaded
    assert st.list_files(uri) == ["optuna.db", "spec.yaml", "state.json"]
    assert paths.location == uri and paths.artifacts_uri == f"{uri}/trial_artifacts"
    storage_path, fs = paths.tune_storage()
    assert storage_path == "study-dirs/studies/s1/tune" and fs.type_name == "s3"
    assert existing_study(uri, spec, relaunch=True)

    # a restarted head: an empty disk; the driver's working copy and a reader's view both come from the bucket
    monkeypatch.setenv("STUDY_NODE_CACHE", str(tmp_path / "head2"))
    _, driver = open_study_dir(uri, driver=True)
    assert driver.dir == tmp_path / "head2" / "mirror" / "s3" / "study-dirs" / "studies" / "s1"
    assert (driver.dir / "optuna.db").is_file() and driver.state.stages["pretrain"] == "running"
    assert driver.state.tracking_uri == default_tracking_uri(driver.dir)  # not head1's file
    _, view = open_study_dir(uri + "/")
    assert view.dir != driver.dir and (view.dir / "spec.yaml").is_file()

    # relaunching the name with another spec is bad input; so is launching into a folder that holds no study
    other = tmp_path / "other.yaml"
    other.write_text(SMOKE.read_text().replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    assert main(["launch", str(other), "--storage", root, "--name", "s1", "--quiet"]) == 2
    assert "holds a study with a different spec" in capsys.readouterr().err
    st.write_text(f"{root}/junk/file.txt", "x")
    assert main(["launch", str(SMOKE), "--storage", root, "--name", "junk", "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err

    # a corrupt state.json in the bucket is bad input naming it
    st.write_text(f"{uri}/state.json", "{")
    assert main(["status", uri]) == 2
    assert f"{uri}/state.json: not a study's state" in capsys.readouterr().err


def test_a_failed_uri_creation_leaves_neither_prefix_nor_working_copy(s3, tmp_path, monkeypatch):
    from study.tuning.spec import load_spec
    from study.tuning.studydir import StudyPaths, cache_locations, create_study_dir, new_state

    root = make_bucket("half-written") + "/studies"
    uri = f"{root}/s1"
    monkeypatch.setenv("STUDY_NODE_CACHE", str(tmp_path / "node"))
    spec = load_spec(SMOKE)
    state = new_state(uri, str(SMOKE), cache_locations(spec, root), {}, None, None)
    real = StudyPaths.push

    def push_then_fail(self, force=False):
        real(self, force)  # the bucket already holds the files
        raise OSError("connection reset")

    monkeypatch.setattr(StudyPaths, "push", push_then_fail)
    with pytest.raises(OSError):
        create_study_dir(uri, spec, state)
    assert st.list_files(root) == [] and not st.local_mirror(uri).exists()
