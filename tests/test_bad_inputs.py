"""Malformed inputs (issue 8, benchmarks/bad_inputs.py): exit 2, a message naming the field or file and
the fix, and nothing left behind: no study directory, no cache folder, no MLflow run.

The fast cases fail before Ray starts and run in-process through ``study.cli.main``; the NaN-loss cases
run a real study in a subprocess (about a minute and a half each on 2 CPUs) and are marked slow.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.bad_inputs import CASES, closed_port, run_case

FAST = [c for c in CASES if not c.slow]
SLOW = [c for c in CASES if c.slow]


def test_the_suite_has_at_least_20_distinct_cases():
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", FAST, ids=lambda c: c.name)
def test_bad_input(case, tmp_path):
    out = run_case(case, workdir=tmp_path, in_process=True)
    assert out.ok, f"{out.line()}\n--- stderr ---\n{out.stderr[-3000:]}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through 0o500; the benchmark uses a file in the path")
def test_storage_without_write_permission(tmp_path):
    from study.cli import check_writable
    from study.tuning.errors import StudyInputError

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(StudyInputError, match="not writable"):
            check_writable(locked / "studies", "--storage")
    finally:
        locked.chmod(0o700)


def test_write_probe_leaves_nothing(tmp_path):
    from study.cli import check_writable

    check_writable(tmp_path / "a" / "b", "--storage")
    assert list(tmp_path.iterdir()) == []


def test_tracking_uri_checks(tmp_path):
    from study.cli import check_tracking_uri
    from study.tuning.errors import StudyInputError

    check_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db", "--tracking-uri")
    check_tracking_uri(str(tmp_path / "mlruns"), "--tracking-uri")  # a bare path: a file store
    with pytest.raises(StudyInputError, match="folder .* does not exist"):
        check_tracking_uri(f"sqlite:///{tmp_path}/nope/mlflow.db", "--tracking-uri")
    with pytest.raises(StudyInputError, match="unreachable"):
        check_tracking_uri(f"http://127.0.0.1:{closed_port()}", "tracking.uri")


def test_address_checks():
    from study.cli import check_address
    from study.tuning.errors import StudyInputError

    check_address("local")
    for bad in ("head-node", "10.0.0.1:", ":6379", "10.0.0.1:99999", "ray://"):
        with pytest.raises(StudyInputError, match="expected auto or HOST:PORT"):
            check_address(bad)
    with pytest.raises(StudyInputError, match="no Ray cluster answers"):
        check_address(f"ray://127.0.0.1:{closed_port()}")


@pytest.mark.parametrize(
    ("reply", "says"), [(b"HTTP/1.1 400 Bad Request\r\n\r\n", "not as a Ray head"), (None, "says nothing")]
)
def test_an_address_that_is_not_ray_exits_at_once(reply, says):
    """A port that accepts connections but is not Ray (a web server, a silent service) would hang ray.init."""
    import socket
    import threading
    import time

    from study.cli import check_address
    from study.tuning.errors import StudyInputError

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    held = []  # open until the test ends: a silent service never closes on its own

    def serve() -> None:  # one connection: reachability and the probe share it
        conn, _ = server.accept()
        held.append(conn)
        if reply is not None:
            conn.settimeout(1)
            try:
                conn.recv(64)
                conn.sendall(reply)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    t0 = time.perf_counter()
    with pytest.raises(StudyInputError, match=says):
        check_address(f"127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 10
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=lambda c: c.name)
def test_nan_loss_fails_the_trial_and_the_study_completes(case, tmp_path):
    out = run_case(case, workdir=tmp_path, in_process=False, timeout=900)
    assert out.ok, f"{out.line()}\n--- stderr ---\n{out.stderr[-3000:]}"
