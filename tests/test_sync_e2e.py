"""``alex-models sync`` and the store commands as a user runs them: the installed console script,
real subprocesses, the mirror server as the Hub. The slow tests kill a sync mid-download and run
two syncs at once on one store."""

from __future__ import annotations

import json
import signal
import stat
from pathlib import Path

import pytest
from helpers import (
    Hub,
    blob,
    cdn_gets,
    cli,
    home,
    progress_done,
    sha256,
    start,
    view,
    wait_for,
    write_manifest,
)

from alex_models._units import human_size
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

ALPHA, BETA = "org/alpha", "org/beta"
ALPHA_FILE, BETA_FILE = "alpha-Q4_K_M.gguf", "beta-Q4_K_M.gguf"
TWO = {"alpha": {"repo": ALPHA, "quant": "Q4_K_M"}, "beta": {"repo": BETA, "quant": "Q4_K_M"}}


@pytest.fixture
def hub(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Hub:
    """Two repos with one small GGUF each; HF_ENDPOINT points at the mirror."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    alpha = write_tiny_gguf(tmp_path / "alpha.gguf", context_length=1001).read_bytes()
    beta = write_tiny_gguf(tmp_path / "beta.gguf", context_length=1002).read_bytes()
    commits = {
        ALPHA: mirror_root.commit(ALPHA, {ALPHA_FILE: alpha}),
        BETA: mirror_root.commit(BETA, {BETA_FILE: beta}),
    }
    return Hub(mirror_root, mirror, {ALPHA_FILE: alpha, BETA_FILE: beta}, commits)


# -- output ----------------------------------------------------------------------------------------


def test_sync_prints_plain_progress_lines_on_stderr_and_a_summary(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)

    result = cli(project, "sync")

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    for name in (ALPHA_FILE, BETA_FILE):
        repo = ALPHA if name == ALPHA_FILE else BETA
        assert f"fetching {repo}/{name} ({human_size(len(hub.files[name]))})" in lines
        assert f"stored {repo}/{name}" in lines
    total = len(hub.files[ALPHA_FILE]) + len(hub.files[BETA_FILE])
    assert result.stdout.startswith(
        f"Synced 2 model(s) into {home()}: 2 downloaded ({human_size(total)}), 0 already there, in "
    )
    assert "\x1b[" not in result.stderr  # no terminal escapes in a log


def test_sync_quiet_prints_nothing_on_success(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)

    result = cli(project, "sync", "--quiet")

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert view(hub, ALPHA, ALPHA_FILE).read_bytes() == hub.files[ALPHA_FILE]


def test_sync_json_prints_one_object_with_the_summary(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)

    result = cli(project, "sync", "--json")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    payload = json.loads(result.stdout)  # one object, nothing else on stdout
    assert payload["kind"] == "sync"
    assert sorted(payload["downloaded"]) == [f"{ALPHA}/{ALPHA_FILE}", f"{BETA}/{BETA_FILE}"]
    assert payload["reused"] == []
    assert payload["bytes"] == len(hub.files[ALPHA_FILE]) + len(hub.files[BETA_FILE])
    assert isinstance(payload["seconds"], float)
    assert payload["models"]["alpha"]["main"] == str(view(hub, ALPHA, ALPHA_FILE))
    assert payload["resolved"] == ["alpha", "beta"]

    again = json.loads(cli(project, "sync", "--json").stdout)

    assert (again["downloaded"], again["bytes"], again["resolved"]) == ([], 0, [])
    assert sorted(again["reused"]) == sorted(payload["downloaded"])


def test_sync_locked_with_a_stale_lock_exits_1_with_one_error_and_a_hint(hub: Hub, project: Path) -> None:
    write_manifest(project, {"alpha": TWO["alpha"]})
    assert cli(project, "lock").returncode == 0
    write_manifest(project, TWO)

    result = cli(project, "sync", "--locked")

    assert result.returncode == 1
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: ")
    assert "+ beta: new in the manifest" in error
    assert hint == "hint: run 'alex-models lock' and commit models.lock"
    assert not (home() / "blobs").exists() or list((home() / "blobs").rglob("*.*")) == []


def test_a_hand_edited_sha256_fails_at_once_exit_3_blaming_the_lock_not_the_server(
    hub: Hub, project: Path
) -> None:
    write_manifest(project, {"alpha": TWO["alpha"]})
    assert cli(project, "lock").returncode == 0
    real = sha256(hub.files[ALPHA_FILE])
    edited = real[:10] + ("0" if real[10] != "0" else "1") + real[11:]  # one hex digit changed
    lock_path = project / "models.lock"
    lock_path.write_text(lock_path.read_text(encoding="utf-8").replace(real, edited), encoding="utf-8")
    hub.server.clear_log()

    result = cli(project, "sync", "--frozen")

    assert result.returncode == 3, result.stderr
    error, hint = result.stderr.splitlines()[-2:]
    assert error == (
        f"error: {ALPHA}/{ALPHA_FILE}: the server says this file's SHA256 is {real}, the lock pins {edited}"
    )
    assert hint.startswith("hint: the lock is wrong, not the download")
    assert hint.endswith("restore models.lock from git or run 'alex-models lock --upgrade-model alpha'")
    # Only the redirect was read: the CDN was never asked for the file's bytes, not even once.
    log = hub.server.wait_log(lambda records: any("/resolve/" in r.path for r in records))
    assert cdn_gets(log, ALPHA_FILE) == []
    assert [r.status for r in log if "/resolve/" in r.path] == [302]
    assert list((home() / "tmp").glob(f"{edited}*")) == []  # nothing kept under the wrong name


# -- status, verify, path, gc ---------------------------------------------------------------------


def test_status_json_reports_each_model_state_and_sizes(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)
    assert cli(project, "sync", "--only", "alpha", "--quiet").returncode == 0

    result = cli(project, "status", "--json")

    assert result.returncode == 1  # beta is not synced; the whole object comes first all the same
    assert result.stderr == "hint: run 'alex-models sync'\n"
    payload = json.loads(result.stdout)
    assert (payload["stale"], payload["synced"]) == ([], False)
    assert (payload["store"], payload["store_origin"], payload["store_overridden"]) == (
        str(home()),
        "ALEX_MODELS_HOME",
        None,
    )
    alpha, beta = payload["models"]["alpha"], payload["models"]["beta"]
    size_a, size_b = len(hub.files[ALPHA_FILE]), len(hub.files[BETA_FILE])
    assert alpha == {
        "state": "present",
        "synced": True,
        "sync_state": "synced",
        "views_missing": False,
        "files": 1,
        "present_files": 1,
        "size": size_a,
        "present_bytes": size_a,
        "main": str(view(hub, ALPHA, ALPHA_FILE)),
    }
    assert beta == {
        "state": "missing",
        "synced": False,
        "sync_state": "missing",
        "views_missing": False,
        "files": 1,
        "present_files": 0,
        "size": size_b,
        "present_bytes": 0,
        "main": None,
    }


def test_verify_exits_0_then_3_naming_a_corrupted_blob(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)
    assert cli(project, "sync", "--quiet").returncode == 0

    clean = cli(project, "verify")

    assert clean.returncode == 0, clean.stderr
    assert clean.stdout == "All 2 blob(s) match the lock.\n"

    damaged = blob(sha256(hub.files[BETA_FILE]))
    damaged.chmod(damaged.stat().st_mode | stat.S_IWUSR)
    with damaged.open("r+b") as f:
        f.seek(10)
        f.write(b"\xff\xfe")

    result = cli(project, "verify")

    assert result.returncode == 3
    assert f"corrupt: {BETA}/{BETA_FILE}" in result.stderr
    assert ALPHA_FILE not in result.stderr
    assert not damaged.exists()


def test_path_prints_the_absolute_view_path(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)
    assert cli(project, "sync", "--quiet").returncode == 0

    result = cli(project, "path", "alpha")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{view(hub, ALPHA, ALPHA_FILE)}\n"
    assert Path(result.stdout.strip()).read_bytes() == hub.files[ALPHA_FILE]


def test_path_of_an_unknown_model_exits_1(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)
    assert cli(project, "sync", "--quiet").returncode == 0

    result = cli(project, "path", "gamma")

    assert result.returncode == 1
    assert result.stderr.startswith("error: no model named 'gamma'")


def test_gc_dry_run_says_what_it_would_free_and_removes_nothing(hub: Hub, project: Path) -> None:
    write_manifest(project, TWO)
    assert cli(project, "sync", "--quiet").returncode == 0
    write_manifest(project, {"alpha": TWO["alpha"]})
    assert cli(project, "sync", "--quiet").returncode == 0
    beta = blob(sha256(hub.files[BETA_FILE]))

    dry = cli(project, "gc", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    size = len(hub.files[BETA_FILE])
    beta_view = view(hub, BETA, BETA_FILE)
    assert dry.stdout.splitlines() == [
        f"would remove blob {beta} ({human_size(size)})",
        f"would remove view {beta_view} ({human_size(size)})",
        f"Would free {human_size(size)}: 1 blob(s), 0 partial(s), 1 view(s). Locks still in use: 1.",
    ]
    assert beta.exists()
    assert beta_view.exists()

    done = cli(project, "gc", "--json")

    report = json.loads(done.stdout)
    assert report["bytes_freed"] == size
    assert report["removed"] == {
        "blobs": [{"path": str(beta), "bytes": size}],
        "partials": [],
        "views": [{"path": str(beta_view), "bytes": size}],
    }
    assert not beta.exists()


# -- interruptions and concurrency ---------------------------------------------------------------

BIG_FILE = "big-Q4_K_M.gguf"


@pytest.mark.slow
def test_killed_sync_resumes_from_its_partial_file(hub: Hub, project: Path, tmp_path: Path) -> None:
    big = write_tiny_gguf(tmp_path / "big.gguf", padding=40 * 1000 * 1000)
    size, digest = big.stat().st_size, sha256(big.read_bytes())
    commit = hub.root.commit("org/big", {BIG_FILE: big})
    write_manifest(project, {"big": {"repo": "org/big", "quant": "Q4_K_M"}})
    hub.server.faults.add("bandwidth=8MB,on=cdn")
    record = home() / "tmp" / f"{digest}.json"

    first, _ = start(project, "sync")
    try:
        # Past 60% of the file: a sync that started over would then fetch more than 1.5x the size.
        wait_for(lambda: progress_done(record) >= 0.6 * size, "60% of the file in the progress record")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    checkpointed = progress_done(record)
    pieces = json.loads(record.read_text(encoding="utf-8"))["segments"]
    assert first.returncode == -signal.SIGKILL
    assert (home() / "tmp" / f"{digest}.part").exists()
    assert not blob(digest).exists()
    # The killed run asked for each piece once (two pieces of this size, both at once).
    killed = cdn_gets(hub.server.wait_log(lambda log: len(cdn_gets(log, BIG_FILE)) == len(pieces)), BIG_FILE)
    assert sorted(str(r.range) for r in killed) == sorted(
        f"bytes={start}-{end - 1}" for start, end, _ in pieces
    )
    hub.server.faults.clear()

    second = cli(project, "sync")

    assert second.returncode == 0, second.stderr
    assert f"fetching org/big/{BIG_FILE} ({human_size(size)}, resuming at {human_size(checkpointed)})" in (
        second.stderr.splitlines()
    )
    verified = cli(project, "verify")
    assert verified.returncode == 0, verified.stderr
    assert blob(digest).stat().st_size == size
    assert (home() / "llama.cpp" / "hf" / "org" / "big" / commit / BIG_FILE).exists()
    # The second run asks only for what no checkpoint covered, from where each piece stopped.
    left = [f"bytes={start + done}-{end - 1}" for start, end, done in pieces if start + done < end]
    count = len(pieces) + len(left)
    gets = cdn_gets(hub.server.wait_log(lambda log: len(cdn_gets(log, BIG_FILE)) >= count), BIG_FILE)
    resumed = gets[len(pieces) :]
    assert sorted(str(r.range) for r in resumed) == sorted(left)
    assert sum(r.bytes_sent for r in killed) >= checkpointed  # the log counts what the killed run received
    assert sum(r.bytes_sent for r in resumed) == size - checkpointed
    assert sum(r.bytes_sent for r in gets) < 1.5 * size


@pytest.mark.slow
def test_two_syncs_at_once_both_succeed_and_each_blob_is_downloaded_once(
    hub: Hub, project: Path, tmp_path: Path
) -> None:
    repos = {"one": "one-Q4_K_M.gguf", "two": "two-Q4_K_M.gguf"}
    sizes = {}
    for n, (key, name) in enumerate(repos.items(), 1):
        made = write_tiny_gguf(tmp_path / name, context_length=n, padding=6 * 1000 * 1000)
        sizes[name] = made.stat().st_size
        hub.root.commit(f"org/{key}", {name: made})
    write_manifest(project, {key: {"repo": f"org/{key}", "quant": "Q4_K_M"} for key in repos})
    hub.server.faults.add("bandwidth=8MB,on=cdn")  # each file takes most of a second to arrive

    runs = [start(project, "sync", "--json")[0] for _ in range(2)]
    codes = [run.wait(timeout=60) for run in runs]

    outputs = [(tmp_path / f"run-{i}.{kind}").read_text(encoding="utf-8") for i in range(2) for kind in "oe"]
    assert codes == [0, 0], outputs
    log = hub.server.wait_log(lambda records: all(cdn_gets(records, name) for name in sizes))
    summaries = [json.loads((tmp_path / f"run-{i}.o").read_text(encoding="utf-8")) for i in range(2)]
    for key, name in repos.items():
        # One GET per file, and it carried the whole file: the other process waited and reused it.
        assert [(r.status, r.bytes_sent) for r in cdn_gets(log, name)] == [(200, sizes[name])], name
        label = f"org/{key}/{name}"
        assert sorted(label in s["downloaded"] for s in summaries) == [False, True], summaries
        assert sorted(label in s["reused"] for s in summaries) == [False, True], summaries
    assert sum(s["bytes"] for s in summaries) == sum(sizes.values())
    assert cli(project, "verify").returncode == 0
