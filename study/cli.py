"""The ``study`` command line (docs/architecture.md, CLI). Exit codes: 0 success, 2 bad input, 1 a failed run.

``validate`` and ``plan`` import only the spec and the plan; the verbs that run or read a study import
Ray, MLflow and torch (seconds) inside their handlers, so that a wrong flag or spec fails at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from study import storage as st
from study.tuning.errors import StudyInputError, StudyInterrupted
from study.tuning.plan import check_resources, format_plan, make_plan
from study.tuning.smoke import smoke_spec
from study.tuning.spec import Spec, SpecError, load_spec

VERBS = {
    "validate": "check a spec; a one-line summary, or SPEC: path.to.field: problem",
    "plan": "dry run: cells, pretraining jobs, LNL trials, final-seed runs, estimated GPU-hours",
    "launch": "run a study; prints its study directory",
    "resume": "continue an interrupted study: nothing finished is rerun, nothing is lost",
    "status": "trials by stage and state; errors with reasons",
    "report": "tables, plots and an HTML dashboard from MLflow; also logged to MLflow",
    "ui": "MLflow UI for the study, bound to 127.0.0.1",
}


def _port(text: str) -> int:
    """A TCP port for the MLflow UI: 1..65535 (0 would let the server pick one the hint could not name)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; e.g. --port 5001") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1..65535); e.g. --port 5001")
    return port


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(
        prog="study",
        description="Noisy-label robustness studies: datasets x noise x SSL pretraining x LNL algorithms x seeds, "
        "on Ray Tune with Optuna and MLflow.",
        epilog="Exit codes: 0 success, 2 bad input (nothing written), 1 a failed run. `study VERB -h` for a verb.",
    )
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    spec_help = "the study spec (YAML; see search_spaces/ and docs/architecture.md)"
    dir_help = "a study directory (what `study launch` printed), or its s3:// / gs:// URI"
    quiet_help = "no progress line; errors only"
    verbose_help = "Ray's, MLflow's and Optuna's INFO lines on the terminal (default: in STUDY_DIR/driver.log)"
    s = sub.add_parser("validate", help=VERBS["validate"], description=VERBS["validate"], formatter_class=fmt)
    s.add_argument("spec", help=spec_help)
    s = sub.add_parser("plan", help=VERBS["plan"], description=VERBS["plan"], formatter_class=fmt)
    s.add_argument("spec", help=spec_help)
    s.add_argument("--json", action="store_true", help="the plan as JSON (cell and job ids included)")
    s.add_argument("--smoke", action="store_true", help="plan the spec's smoke run (see launch --smoke)")
    s = sub.add_parser("launch", help=VERBS["launch"], description=VERBS["launch"], formatter_class=fmt)
    s.add_argument("spec", help=spec_help)
    s.add_argument(
        "--smoke",
        action="store_true",
        help="run the spec at tiny scale on stand-in data (no dataset files, no weights), as study NAME-smoke",
    )
    s.add_argument(
        "--storage",
        metavar="ROOT",
        help="folder or s3:// / gs:// URI under which the study directory is created (default: the spec's "
        "storage.root, 'studies')",
    )
    s.add_argument(
        "--name",
        help="study directory name (default: SPEC_NAME-YYYYmmdd-HHMMSS); relaunching with the same name and "
        "spec resumes that study",
    )
    s.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="Ray cluster to run on: HOST:PORT of a head node, ray://HOST:10001, or auto (default: a private "
        "Ray on this machine)",
    )
    s.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: the spec's tracking.uri, else the study's own sqlite store)",
    )
    s.add_argument("--quiet", action="store_true", help=quiet_help)
    s.add_argument("--verbose", action="store_true", help=verbose_help)
    s = sub.add_parser("resume", help=VERBS["resume"], description=VERBS["resume"], formatter_class=fmt)
    s.add_argument("study_dir", help=dir_help)
    s.add_argument("--address", metavar="HOST:PORT", help="Ray cluster (default: the one the study was launched on)")
    s.add_argument(
        "--grow",
        metavar="SPEC",
        help="grow a finished study: SPEC is its spec with values appended to axes (datasets, noise kinds and "
        "rates, label fractions, ssl and lnl entries, seeds); only the new cells, pretraining jobs and final runs "
        "run (default: no growth, the launched spec)",
    )
    s.add_argument("--quiet", action="store_true", help=quiet_help)
    s.add_argument("--verbose", action="store_true", help=verbose_help)
    s = sub.add_parser("status", help=VERBS["status"], description=VERBS["status"], formatter_class=fmt)
    s.add_argument("study_dir", help=dir_help)
    s.add_argument("--json", action="store_true", help="the status as JSON")
    s = sub.add_parser("report", help=VERBS["report"], description=VERBS["report"], formatter_class=fmt)
    s.add_argument("study_dir", help=dir_help)
    s.add_argument("--out", help="output folder (default: STUDY_DIR/report)")
    s.add_argument("--dashboard", help="dashboard definition YAML (default: dashboards/default.yaml)")
    s = sub.add_parser("ui", help=VERBS["ui"], description=VERBS["ui"], formatter_class=fmt)
    s.add_argument("study_dir", help=dir_help)
    s.add_argument("--port", type=_port, default=5000, help="port on 127.0.0.1")
    return p


def _warn(spec: Spec, source: str) -> None:
    """Settings that run but not as their names say (``Spec.tuning.warnings``), on stderr; never an error."""
    for w in spec.tuning.warnings():
        print(f"{source}: warning: {w}", file=sys.stderr)


def _validate(args) -> int:
    spec = load_spec(args.spec)
    _warn(spec, args.spec)
    s = make_plan(spec).summary(spec)
    print(
        f"{args.spec}: ok: study {spec.name!r}, {s['cells']} cells, {s['pretraining_jobs']} pretraining jobs, "
        f"{s['lnl_trials']} LNL trials, {s['final_runs']} final runs"
    )
    return 0


def _plan(args) -> int:
    spec = smoke_spec(load_spec(args.spec)).spec if args.smoke else load_spec(args.spec)
    plan = make_plan(spec)
    if args.json:
        out = plan.summary(spec)
        out["cell_ids"] = [c.id for c in plan.cells]
        out["pretraining_job_ids"] = [j.id for j in plan.pretrain_jobs]
        out["sampler"] = {"text": spec.tuning.sampler_text(), "random_search": spec.tuning.is_random_search}
        print(json.dumps(out, indent=2))
    else:
        print(format_plan(spec, plan, args.spec))
    return 0


def _verbose(args) -> None:
    if getattr(args, "verbose", False):
        os.environ["STUDY_VERBOSE"] = "1"  # read by study.tuning.driver.route_library_logs


def _physical_memory() -> float | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _launch(args) -> int:
    # Everything a launch needs from this machine is checked here, before the study directory exists
    # (docs/architecture.md: a bad input never leaves a half-written study directory behind): the flags
    # first (a wrong flag fails in a fraction of a second, before Ray is imported), then what the spec names.
    _verbose(args)
    if args.address:
        check_address(args.address)
    if args.tracking_uri:
        check_tracking_uri(args.tracking_uri, "--tracking-uri")
    if _local(args.storage):
        check_writable(expand(args.storage, "--storage"), "--storage")
    spec = smoke_spec(load_spec(args.spec)).spec if args.smoke else load_spec(args.spec)
    if not (args.quiet or args.smoke):  # a smoke run samples once per cell by design
        _warn(spec, args.spec)
    if not args.address and not os.environ.get("RAY_ADDRESS"):
        check_resources(spec, os.cpu_count() or 1, "this machine", _physical_memory())
    root = args.storage or spec.storage.root
    if not args.storage and _local(root):
        check_writable(expand(root, "storage.root"), "storage.root")
    # Ray, MLflow and torch: imported only by the verbs that run a study, once the flags are checked
    from study.tuning.launch import launch
    from study.tuning.studydir import cache_locations

    caches = cache_locations(spec, root)  # as launch computes them
    if spec.storage.cache and _local(caches.cache):
        check_writable(Path(caches.cache), "storage.cache")
    if spec.storage.data_cache:  # always a path: cache_locations refuses a URI
        check_writable(Path(caches.data_cache), "storage.data_cache")
    if spec.tracking.uri and not args.tracking_uri:
        check_tracking_uri(spec.tracking.uri, "tracking.uri")
    # launch decodes the datasets into the data cache before it creates the study directory; what a
    # failed launch created there (a new storage folder, lock files, a half-decoded dataset) goes again
    created = _first_missing(Path(caches.data_cache)) if caches.data_cache else None
    try:
        return launch(
            args.spec,
            storage=args.storage,
            name=args.name,
            address=args.address,
            tracking_uri=args.tracking_uri,
            quiet=args.quiet,
            smoke=args.smoke,
        )
    except SpecError as e:
        _remove_created(created)
        raise _refine(e) from None
    except StudyInputError:
        _remove_created(created)
        raise


def _resume(args) -> int:
    _verbose(args)
    if args.address:
        check_address(args.address)
    # Ray, MLflow and torch: imported only by the verbs that run a study, once the flags are checked
    from study.tuning.launch import grow, resume

    if args.grow:
        return grow(args.study_dir, args.grow, address=args.address, quiet=args.quiet)
    return resume(args.study_dir, address=args.address, quiet=args.quiet)


# -- checks of the machine-facing inputs (exit 2 before anything is written) --------------------------


def _local(path: str | None) -> bool:
    """A local path (a URI is checked by whatever opens it)."""
    return path is not None and "://" not in path


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what creating ``path`` would create)."""
    path = path.absolute()
    if path.exists():
        return None
    top = path
    for parent in path.parents:
        if parent.exists():
            return top
        top = parent
    return top


def _remove_created(created: Path | None) -> None:
    if created is None or not created.is_dir():
        return
    if any(created.rglob("state.json")):  # a study: not ours to remove
        return
    shutil.rmtree(created, ignore_errors=True)


def expand(path: str, flag: str) -> Path:
    """``path`` with ``~`` expanded; an unknown user's home is bad input, not a traceback."""
    try:
        return Path(st.as_path(path)).expanduser()
    except RuntimeError:
        raise StudyInputError(
            f"{flag} {path}: cannot expand {path.split('/')[0]!r} (no such user or no home directory); "
            "pass an absolute path"
        ) from None


def check_writable(folder: Path, flag: str) -> None:
    """``folder`` exists as a writable directory, or can be created: else StudyInputError naming ``flag``.
    Writes a probe file (``os.access`` says yes to root even on a 0o500 folder that refuses nothing else)."""
    text = str(folder)
    folder = folder.absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StudyInputError(
            f"{flag} {text}: {existing} is a file, not a folder, so the study directory cannot be "
            "created there; pass a writable folder (e.g. --storage studies)"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".study-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StudyInputError(
            f"{flag} {text}: {existing} is not writable ({e.strerror or e}); pass a writable "
            f"folder or fix its permissions (chmod u+w {existing})"
        ) from None


#: MLflow tracking URI schemes (a bare path is a local file store)
TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql", "databricks")


def _tcp_error(
    host: str, port: int, timeout: float = 3.0, probe: Callable[[socket.socket], str | None] | None = None
) -> str | None:
    """None when something accepts a TCP connection at host:port (and, with ``probe``, answers as the
    probe expects on that connection), else why not."""
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as e:
        return f"host {host!r} not found ({e.strerror or e})"
    except TimeoutError:
        return f"no answer within {timeout:.0f}s"
    except OSError as e:
        return e.strerror or str(e)
    with conn:
        return probe(conn) if probe else None


def check_tracking_uri(uri: str, flag: str) -> None:
    """A known MLflow scheme; a tracking server that answers; a sqlite file whose folder exists."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower().split("+")[0]
    if not scheme or (len(scheme) == 1 and uri[1:2] == ":"):  # a bare path (or a Windows drive)
        return
    if scheme not in TRACKING_SCHEMES:
        raise StudyInputError(
            f"{flag} {uri!r}: unknown scheme {parts.scheme!r} (allowed: "
            f"{', '.join(TRACKING_SCHEMES)}); e.g. http://127.0.0.1:5000 for an MLflow server, "
            "or leave it out to use the study's own sqlite store"
        )
    if scheme in ("http", "https"):
        host = parts.hostname
        if not host:
            raise StudyInputError(f"{flag} {uri!r}: no host; e.g. http://127.0.0.1:5000")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise StudyInputError(f"{flag} {uri!r}: the port is not a number; e.g. http://127.0.0.1:5000") from None
        if getproxies().get(scheme) and not proxy_bypass(host):
            return  # reached through a proxy: the proxy answers for it
        why = _tcp_error(host, port)
        if why:
            raise StudyInputError(
                f"{flag} {uri}: the tracking server at {host}:{port} is unreachable ({why}); start it (e.g. "
                f"`mlflow server --host 127.0.0.1 --port {port}`) or leave out {flag} to use the study's own "
                "sqlite store"
            )
    elif scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if path and path != ":memory:":
            folder = Path(path).expanduser().absolute().parent
            if not folder.is_dir():
                raise StudyInputError(
                    f"{flag} {uri}: the folder {folder} of the sqlite file does not exist; "
                    "create it, or leave the option out to use the study's own store"
                )


def check_address(address: str) -> None:
    """``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT`` of a Ray head that accepts connections."""
    fix = "start one with `ray start --head --port {port}`, or leave out --address to run on this machine"
    if address == "local":
        return
    if address == "auto":
        try:
            # Ray's own lookup of a running cluster; importing Ray takes seconds, so only for --address auto
            from ray._private.services import canonicalize_bootstrap_address

            found = canonicalize_bootstrap_address("auto")
        except (ImportError, AttributeError):
            return  # Ray's own lookup moved: ray.init reports it
        except Exception:
            found = None
        if not found:
            raise StudyInputError(
                "--address auto: no running Ray cluster found on this machine; " + fix.format(port=6379)
            )
        address = found
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    host, sep, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if (
        not sep
        or not host
        or not port_text.isdigit()
        or not 0 < int(port_text) < 65536
        or not all(ch.isalnum() or ch in "-._:" for ch in host)
    ):
        raise StudyInputError(
            f"--address {address!r}: expected auto or HOST:PORT of a Ray head node "
            "(e.g. 127.0.0.1:6379, or ray://HOST:10001 for Ray Client)"
        )
    why = _tcp_error(host, int(port_text), probe=_grpc_error)
    if why:
        raise StudyInputError(
            f"--address {address}: no Ray cluster answers there ({why}); " + fix.format(port=port_text)
        )


#: an HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113, 3.4 and 6.5)
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _grpc_error(conn: socket.socket) -> str | None:
    """None when the connection speaks HTTP/2, as Ray's GCS and Ray Client servers (gRPC) do: their first
    frame is SETTINGS. Anything else (a web server, a silent port) would leave ray.init waiting for minutes."""
    try:
        conn.sendall(_H2_HELLO)
        first = b""
        while len(first) < 9:
            chunk = conn.recv(9 - len(first))
            if not chunk:
                break
            first += chunk
    except TimeoutError:
        return f"the port accepts connections but says nothing within {conn.gettimeout():.0f}s: not a Ray head node"
    except OSError as e:
        return e.strerror or str(e)
    if len(first) == 9 and first[3] == 4:
        return None
    return f"the port answers but not as a Ray head node does (gRPC): {first[:24]!r}"


def _refine(e):
    """launch's noise check reports a rate the data cannot take under ``noise``; it belongs to noise.rates."""
    problems = [("noise.rates" if p == "noise" and "noise rate" in m else p, m) for p, m in e.problems]
    return SpecError(e.source, problems) if problems != e.problems else e


def _status(args) -> int:
    # MLflow and Ray: imported only by the verbs that read a study (module docstring)
    from study.tuning.status import status

    return status(args.study_dir, as_json=args.json)


def _report(args) -> int:
    # MLflow, pandas and matplotlib: imported only by the verbs that read a study (module docstring)
    from study.reports.cli import report_main

    return report_main(args)


def _ui(args) -> int:
    # MLflow: imported only by the verbs that read a study (module docstring)
    from study.reports.cli import ui_main

    return ui_main(args)


HANDLERS = {
    "validate": _validate,
    "plan": _plan,
    "launch": _launch,
    "resume": _resume,
    "status": _status,
    "report": _report,
    "ui": _ui,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        return HANDLERS[args.verb](args)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 2
    except StudyInputError as e:
        print(f"study {args.verb}: {e}", file=sys.stderr)
        return 2
    except StudyInterrupted as e:
        print(f"study {args.verb}: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C outside Ray Tune's own handling (starting Ray, decoding data)
        print(f"study {args.verb}: interrupted (Ctrl-C); what finished is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
