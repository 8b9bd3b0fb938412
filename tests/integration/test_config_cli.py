"""The remora CLI: validate, version, health, and run refusing a bad file."""

import subprocess
import textwrap
import time

from conftest import REMORA_BIN, one_cluster_config
from helpers import REPO, free_port, project_version


def remora_cli(*args, timeout=20, cwd=None):
    return subprocess.run([str(REMORA_BIN), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


TYPO_CONFIG = textwrap.dedent("""\
    admin:
      address: 127.0.0.1:{admin}
    listeners:
      - name: main
        address: 127.0.0.1:{port}
        route_table: main
    route_tables:
      - name: main
        routes:
          - match:
              prefix: /
            cluster: app
            retires:
              attempts: 3
    clusters:
      - name: app
        endpoints: [ "127.0.0.1:8080" ]
    """)


def _position(text, needle):
    """1-based line and column of the first occurrence of needle."""
    for i, line in enumerate(text.splitlines(), start=1):
        col = line.find(needle)
        if col >= 0:
            return i, col + 1
    raise AssertionError(needle)


def test_validate_typo_prints_exact_location_and_suggestion(tmp_path):
    text = TYPO_CONFIG.format(admin=free_port(), port=free_port())
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    line, col = _position(text, "retires:")
    res = remora_cli("validate", "-c", str(path))
    expected = '%s:%d:%d: route_tables[0].routes[0]: unknown field "retires" (did you mean "retry"?)' % (
        path, line, col)
    assert res.returncode == 1, res
    assert expected in res.stderr.splitlines(), "expected line:\n%s\nstderr:\n%s" % (expected, res.stderr)


def test_validate_lists_every_error(tmp_path):
    text = TYPO_CONFIG.format(admin=free_port(), port=free_port()).replace(
        "endpoints:", "endpionts:").replace("route_table: main", "route_tabel: main")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    res = remora_cli("validate", "-c", str(path))
    assert res.returncode == 1, res
    lines = [l for l in res.stderr.splitlines() if "unknown field" in l]
    for key, suggestion in (("retires", "retry"), ("endpionts", "endpoints"),
                            ("route_tabel", "route_table")):
        line, col = _position(text, key + ":")
        prefix = "%s:%d:%d: " % (path, line, col)
        assert any(l.startswith(prefix) and '"%s"' % key in l and '"%s"' % suggestion in l
                   for l in lines), "no error for %s at %s in:\n%s" % (key, prefix, res.stderr)


def test_validate_reports_missing_cluster_and_bad_duration(tmp_path):
    text = TYPO_CONFIG.format(admin=free_port(), port=free_port()).replace(
        "cluster: app", "cluster: nosuch").replace(
        "retires:\n          attempts: 3", "timeout: 5 parsecs")
    path = tmp_path / "semantic.yaml"
    path.write_text(text)
    res = remora_cli("validate", "-c", str(path))
    assert res.returncode == 1, res
    errors = [l for l in res.stderr.splitlines() if l.startswith(str(path) + ":")]
    assert any("nosuch" in l for l in errors), res.stderr
    assert any("timeout" in l for l in errors), res.stderr


def test_validate_clean_config_prints_ok(tmp_path):
    text = TYPO_CONFIG.format(admin=free_port(), port=free_port()).replace(
        "        retires:\n          attempts: 3\n", "")
    path = tmp_path / "good.yaml"
    path.write_text(text)
    res = remora_cli("validate", "-c", str(path))
    assert res.returncode == 0, res
    assert "%s: ok" % path in res.stdout.splitlines(), res


def test_every_example_config_validates():
    files = sorted((REPO / "config").glob("*.yaml"))
    assert files, "config/ holds no example *.yaml"
    files.append(REPO / "docs" / "deploy" / "remora.yaml")  # the compose example's sidecar config
    failures = []
    for f in files:
        rel = str(f.relative_to(REPO))
        res = remora_cli("validate", "-c", rel, cwd=REPO)
        if res.returncode != 0 or "%s: ok" % rel not in res.stdout:
            failures.append("%s: exit %s\n%s%s" % (rel, res.returncode, res.stdout, res.stderr))
    assert not failures, "\n".join(failures)


def test_run_refuses_invalid_config(tmp_path):
    text = TYPO_CONFIG.format(admin=free_port(), port=free_port())
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    proc = subprocess.Popen([str(REMORA_BIN), "run", "-c", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode not in (0, None)
    assert "retires" in out + err


def test_version_prints_project_version():
    res = remora_cli("version")
    assert res.returncode == 0, res
    assert project_version() in res.stdout, res


def test_health_follows_ready(procs, upstream):
    r = procs.remora(one_cluster_config(upstream))
    ok = remora_cli("health", "--url", r.admin + "/ready")
    assert ok.returncode == 0, ok
    dead = remora_cli("health", "--url", "http://127.0.0.1:%d/ready" % free_port())
    assert dead.returncode != 0, dead
    # A URL that answers, but not 200, is not healthy either.
    not_found = remora_cli("health", "--url", r.admin + "/no-such-admin-page")
    assert not_found.returncode != 0, not_found


def test_keys_this_release_does_not_run_are_refused_not_ignored(tmp_path):
    # A valid cluster `tls:` that would silently send plaintext is refused, with its place.
    text = TYPO_CONFIG.replace("retires:", "retry:").format(admin=free_port(), port=free_port())
    text += "    tls:\n      ca_file: /etc/remora/ca.pem\n"
    path = tmp_path / "tls.yaml"
    path.write_text(text)
    res = remora_cli("validate", "-c", str(path))
    assert res.returncode == 1, res
    line, col = _position(text, "ca_file")  # where the block's value starts
    assert ("%s:%d:%d: clusters[0].tls: tls (mTLS) is not supported yet by "
            "this release of remora (it would be ignored, so it is refused)" % (path, line, col)
            ) in res.stderr.splitlines(), res
    # retry: is run now, so the same file without the tls block is valid.
    ok = tmp_path / "retry.yaml"
    ok.write_text(text.split("    tls:")[0])
    assert remora_cli("validate", "-c", str(ok)).returncode == 0
    run = remora_cli("run", "-c", str(path))
    assert run.returncode == 1, run
