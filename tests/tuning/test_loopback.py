"""The Ray that `study` starts for itself listens on 127.0.0.1 only (docs/architecture.md, security)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import ipaddress, os, psutil, ray
    from study.tuning.driver import init_ray
    init_ray(None, quiet=True)
    ray.get(ray.remote(lambda: 1).remote())  # a worker process too
    addrs = set()
    for p in psutil.Process().children(recursive=True):
        try:
            conns = p.net_connections(kind="inet")
        except psutil.Error:
            continue
        addrs |= {(c.laddr.ip, p.name()) for c in conns if c.status == psutil.CONN_LISTEN}
    print("LISTEN", sorted(addrs))
    bad = [(a, n) for a, n in addrs if not ipaddress.ip_address(a.removeprefix("::ffff:")).is_loopback]
    print("NOT_LOOPBACK", bad)
    print("ENV", os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"))
    ray.shutdown()
    """
)


def test_a_private_ray_listens_on_loopback_only():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300).stdout
    listen = next(line for line in out.splitlines() if line.startswith("LISTEN"))
    assert "gcs_server" in listen and "raylet" in listen, out  # the servers were seen
    assert "NOT_LOOPBACK []" in out, out
    assert "ENV None" in out, out  # put back for whatever this process starts later
