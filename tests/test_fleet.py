"""Fleets over a folder remote (``file://``): CI syncs from the Hub and pushes; hosts sync from the
folder. Real folders, the real mirror (its request log says what went over the network) and the
installed CLI in subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, cli, progress_done, since_settled, start, wait_for
from s3kit import SECRET, Meter, keep_versions, versions

from alex_models._units import human_size
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.store import Store, blob_key
from alex_models.tinymodels import write_tiny_gguf

NAMES = ("chat", "embed")


def project_with_remote(
    folder: Path, mirror_root: MirrorRoot, tmp_path: Path, *, remote: str = "", padding: int = 0
) -> dict[str, bytes]:
    """A project of two models on the mirror, with ``remotes: {team: {url: remote}}`` when given."""
    files = {
        f"{name}-Q4_K_M.gguf": write_tiny_gguf(
            tmp_path / f"{name}.gguf", context_length=n, padding=padding
        ).read_bytes()
        for n, name in enumerate(NAMES, start=1000)
    }
    for name in NAMES:
        mirror_root.commit(f"org/{name}", {f"{name}-Q4_K_M.gguf": files[f"{name}-Q4_K_M.gguf"]})
    manifest: dict[str, object] = {
        "version": 1,
        "models": {name: {"repo": f"org/{name}", "quant": "Q4_K_M"} for name in NAMES},
    }
    if remote:
        manifest["remotes"] = {"team": {"url": remote}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.yaml").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return files


def remote_blobs(root: Path) -> dict[str, str]:
    """Every file under a remote's final blob names, by name, with the SHA256 of its bytes."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (root / "blobs").rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


def ok(run: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture
def ci(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, bytes]]:
    """CI's project, synced from the mirror, whose models.yaml names the folder remote ``team``."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    files = project_with_remote(folder, mirror_root, tmp_path, remote=(tmp_path / "team").as_uri())
    ok(cli(folder, "sync"))
    return folder, files


def host(tmp_path: Path, ci_folder: Path, monkeypatch: pytest.MonkeyPatch, name: str = "host") -> Path:
    """A host: the committed lock alone, and an empty store of its own."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "models.lock").write_bytes((ci_folder / "models.lock").read_bytes())
    monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / f"{name}-store"))
    return folder


def test_push_then_a_host_syncs_everything_from_the_folder_and_nothing_from_the_hub(
    ci: tuple[Path, dict[str, bytes]], mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, files = ci
    team = tmp_path / "team"

    pushed = json.loads(ok(cli(folder, "push", "--json")).stdout)  # the first named remote

    assert pushed["remote"] == team.as_uri()
    assert sorted(b["file"] for b in pushed["uploaded"]) == sorted(f"org/{n}/{n}-Q4_K_M.gguf" for n in NAMES)
    assert pushed["bytes"] == sum(len(data) for data in files.values())
    assert sorted(remote_blobs(team).values()) == sorted(
        hashlib.sha256(d).hexdigest() for d in files.values()
    )
    lock_text = (folder / "models.lock").read_bytes()
    assert pushed["lock"] == f"locks/{hashlib.sha256(lock_text).hexdigest()}.lock"
    assert (team / pushed["lock"]).read_bytes() == lock_text
    assert (team / pushed["lock"].replace(".lock", ".yaml")).read_bytes() == (
        folder / "models.yaml"
    ).read_bytes()

    since_settled(mirror)
    mirror.clear_log()
    deployed = host(tmp_path, folder, monkeypatch)
    ok(cli(deployed, "sync", "--frozen", "--from", team.as_uri(), "--no-hub"))

    assert since_settled(mirror) == [], "nothing came from the mirror"
    ok(cli(deployed, "verify"))
    store = Store(tmp_path / "host-store")
    assert all(store.blob_path(hashlib.sha256(d).hexdigest()).read_bytes() == d for d in files.values())


def test_offline_a_host_syncs_from_a_folder_on_this_machine_but_never_from_a_bucket(
    ci: tuple[Path, dict[str, bytes]], mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, files = ci
    team = tmp_path / "team"
    ok(cli(folder, "push", "team"))
    since_settled(mirror)
    mirror.clear_log()
    deployed = host(tmp_path, folder, monkeypatch)

    bucket_only = cli(deployed, "sync", "--frozen", "--offline", "--from", "s3://models/team")
    assert bucket_only.returncode == 1
    assert "offline, and 2 locked file(s) are not in the store" in bucket_only.stderr
    assert "or name a folder or bundle with --from" in bucket_only.stderr

    ok(cli(deployed, "sync", "--frozen", "--offline", "--from", "s3://models/team", "--from", team.as_uri()))

    assert since_settled(mirror) == [], "offline: nothing came from the mirror"
    store = Store(tmp_path / "host-store")
    assert all(store.blob_path(hashlib.sha256(d).hexdigest()).read_bytes() == d for d in files.values())


def test_a_second_push_uploads_nothing_and_says_what_it_skipped(
    ci: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    folder, files = ci
    first = ok(cli(folder, "push", "team"))
    chat = f"org/chat/chat-Q4_K_M.gguf ({human_size(len(files['chat-Q4_K_M.gguf']))})"
    assert f"uploading {chat}" in first.stderr.splitlines()  # a line per file in a log, as sync's
    assert "sent org/chat/chat-Q4_K_M.gguf" in first.stderr.splitlines()
    assert ok(cli(folder, "push", "team", "--quiet")).stdout == ""

    again = ok(cli(folder, "push", "team"))
    report = json.loads(ok(cli(folder, "push", "team", "--json")).stdout)

    assert report["uploaded"] == []
    assert report["bytes"] == 0
    assert sorted(b["bytes"] for b in report["skipped"]) == sorted(len(d) for d in files.values())
    assert "uploaded:" not in again.stdout
    assert (
        f"skipped: org/chat/chat-Q4_K_M.gguf ({human_size(len(files['chat-Q4_K_M.gguf']))}, already there)"
        in again.stdout
    )
    assert "0 uploaded (0 B), 2 already there" in again.stdout


def abandon(temporary: Path, days: float) -> Path:
    """``temporary`` as an upload killed midway left it, last written ``days`` ago."""
    then = time.time() - days * 24 * 3600
    os.utime(temporary, (then, then))
    return temporary


def test_a_push_removes_temporaries_abandoned_for_a_day_and_keeps_younger_ones(
    ci: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    folder, files = ci
    team = tmp_path / "team"
    ok(cli(folder, "push"))
    digest = hashlib.sha256(files["chat-Q4_K_M.gguf"]).hexdigest()
    beside = Store(team).blob_path(digest).parent
    (beside / f".{digest}.killed.part").write_bytes(b"half a blob")
    (beside / f".{digest}.copying.part").write_bytes(b"another host's copy, in progress")
    killed = abandon(beside / f".{digest}.killed.part", days=1.1)
    live = abandon(beside / f".{digest}.copying.part", days=0.9)

    report = json.loads(ok(cli(folder, "push", "--json")).stdout)

    assert report["uploaded"] == [], "nothing else to send: the clean-up does not wait for an upload"
    assert not killed.exists()
    assert live.exists(), "a younger one may be another host's live copy"
    assert sorted(remote_blobs(team).values()) == sorted(
        hashlib.sha256(d).hexdigest() for d in files.values()
    )


def test_push_of_an_unsynced_model_refuses_naming_it_and_uploads_nothing(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder, team = tmp_path / "ci", tmp_path / "team"
    project_with_remote(folder, mirror_root, tmp_path, remote=team.as_uri())
    ok(cli(folder, "sync", "--only", "chat"))  # embed is locked, not synced

    refused = cli(folder, "push")

    assert refused.returncode == 1
    assert "embed" in refused.stderr
    assert "chat" not in refused.stderr.split("hint")[0]
    assert "run 'alex-models sync' first" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not team.exists()


@pytest.mark.parametrize("damage", ["truncated", "edited"])
def test_a_damaged_object_in_the_remote_is_never_stored_the_hub_serves_it_with_a_warning(
    ci: tuple[Path, dict[str, bytes]],
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
) -> None:
    folder, files = ci
    team = tmp_path / "team"
    ok(cli(folder, "push"))
    data = files["chat-Q4_K_M.gguf"]
    digest = hashlib.sha256(data).hexdigest()
    damaged = Store(team).blob_path(digest)
    damaged.chmod(0o644)
    damaged.write_bytes(data[:-100] if damage == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    since_settled(mirror)
    mirror.clear_log()

    only_remote = cli(
        host(tmp_path, folder, monkeypatch, "strict"),
        "sync",
        "--frozen",
        "--from",
        team.as_uri(),
        "--no-hub",
    )
    assert only_remote.returncode == 3, only_remote.stderr
    assert "org/chat/chat-Q4_K_M.gguf" in only_remote.stderr
    assert not Store(tmp_path / "strict-store").blob_path(digest).exists()

    synced = ok(cli(host(tmp_path, folder, monkeypatch), "sync", "--frozen", "--from", team.as_uri()))

    warning = f"warning: org/chat/chat-Q4_K_M.gguf: {team.as_uri()}: "
    assert warning in synced.stderr, synced.stderr
    assert f"; nothing stored, trying {mirror.url}" in synced.stderr
    assert Store(tmp_path / "host-store").blob_path(digest).read_bytes() == data
    fetched = [r.path for r in since_settled(mirror) if r.path.endswith(".gguf")]
    assert fetched, "the damaged file came from the hub"
    assert all("chat-Q4_K_M.gguf" in path for path in fetched), "and only that one"


def test_no_hub_and_a_blob_no_remote_has_names_each_remote_tried(
    ci: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = ci
    empty, team = tmp_path / "empty", tmp_path / "team"
    empty.mkdir()
    ok(cli(folder, "push", "--only", "chat"))

    failed = cli(
        host(tmp_path, folder, monkeypatch),
        "sync",
        "--frozen",
        "--from",
        empty.as_uri(),
        "--from",
        team.as_uri(),
        "--no-hub",
    )

    assert failed.returncode == 1, failed.stderr
    first = failed.stderr.splitlines()[0]
    assert empty.as_uri() in first
    assert team.as_uri() in first
    assert "org/embed/embed-Q4_K_M.gguf" in first
    assert "chat" not in first
    assert not list((tmp_path / "host-store").glob("blobs/sha256/*/*")), "nothing fetched"


def test_status_remote_says_which_locked_blobs_the_remote_holds_per_model(
    ci: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    folder, files = ci
    ok(cli(folder, "push", "--only", "chat"))

    text = cli(folder, "status", "--remote", "team")
    report = json.loads(cli(folder, "status", "--remote", "team", "--json").stdout)

    assert text.returncode == 1
    assert "chat" in text.stdout
    assert "complete" in text.stdout
    assert "missing: org/embed/embed-Q4_K_M.gguf" in text.stdout
    assert report["remote"] == (tmp_path / "team").as_uri()
    assert report["complete"] is False
    assert report["models"]["chat"]["complete"] is True
    assert [b["bytes"] for b in report["models"]["chat"]["present"]] == [len(files["chat-Q4_K_M.gguf"])]
    assert [b["file"] for b in report["models"]["embed"]["missing"]] == ["org/embed/embed-Q4_K_M.gguf"]


def test_a_secret_in_a_remote_url_of_the_manifest_is_refused_with_its_line(project: Path) -> None:
    (project / "models.yaml").write_text(
        "version: 1\nmodels: {}\nremotes:\n  team:\n    url: s3://AKIA:hunter2@bucket/models\n",
        encoding="utf-8",
    )
    (project / "models.lock").write_text("version: 1\nmodels: {}\n", encoding="utf-8")

    refused = cli(project, "push")

    assert refused.returncode == 1
    assert refused.stderr.startswith("error: models.yaml:5:5: remotes.team.url: a remote URL in models.yaml ")
    assert "must not hold credentials" in refused.stderr
    assert "hunter2" not in refused.stderr + refused.stdout


def two_pushes_at_once(folder: Path) -> list[dict[str, Any]]:
    """Two ``push --json`` of ``folder``'s lock started together, as two CI jobs would; both must
    succeed. Their reports."""
    runs = [
        subprocess.Popen(
            [str(CLI), "push", "--json"],
            cwd=folder,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    return [json.loads(out) for out, _ in outputs]


@pytest.mark.slow
def test_two_pushes_of_one_lock_at_once_both_succeed_and_each_blob_is_uploaded_once(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder, team = tmp_path / "ci", tmp_path / "team"
    files = project_with_remote(folder, mirror_root, tmp_path, remote=team.as_uri(), padding=30_000_000)
    ok(cli(folder, "sync"))

    reports = two_pushes_at_once(folder)
    uploaded = [b["sha256"] for report in reports for b in report["uploaded"]]
    digests = sorted(hashlib.sha256(d).hexdigest() for d in files.values())
    assert sorted(uploaded) == digests, "each blob uploaded by exactly one of them"
    assert sorted(remote_blobs(team).values()) == digests
    assert sorted(remote_blobs(team)) == digests


@pytest.fixture
def big_ci(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, set[str]]:
    """CI's project of two 150 MB models, synced: a push of it takes long enough to stop midway."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    files = project_with_remote(
        folder, mirror_root, tmp_path, remote=(tmp_path / "team").as_uri(), padding=150_000_000
    )
    ok(cli(folder, "sync"))
    return folder, {hashlib.sha256(d).hexdigest() for d in files.values()}


@pytest.mark.slow
def test_a_push_killed_midway_leaves_nothing_half_written_and_a_rerun_finishes(
    big_ci: tuple[Path, set[str]], tmp_path: Path
) -> None:
    folder, digests = big_ci
    team = tmp_path / "team"

    first, _ = start(folder, "push", "--jobs", "1")
    try:
        wait_for(lambda: any(team.rglob(".*.part")), "an upload under its temporary name")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

    assert set(remote_blobs(team).values()) <= digests
    assert all(name == sha for name, sha in remote_blobs(team).items()), "no final name holds other bytes"
    assert len(remote_blobs(team)) < len(digests), "killed before the end"

    ok(cli(folder, "push"))

    assert sorted(remote_blobs(team).items()) == sorted((d, d) for d in digests)
    left = list(team.rglob(".*.part"))
    assert left, "the killed copy's temporary file stays while it could be another host's live one"
    for temporary in left:
        abandon(temporary, days=2)
    ok(cli(folder, "push"))
    assert not list(team.rglob(".*.part")), "a push a day later removes it"


@pytest.mark.slow
def test_ctrl_c_stops_a_push_at_once_says_how_to_go_on_and_leaves_no_partial_object(
    big_ci: tuple[Path, set[str]], tmp_path: Path
) -> None:
    folder, digests = big_ci
    team = tmp_path / "team"

    pushing, stderr = start(folder, "push", "--jobs", "2")
    wait_for(lambda: any(team.rglob(".*.part")), "an upload under its temporary name")
    pushing.send_signal(signal.SIGINT)
    pushing.wait(timeout=10)

    assert pushing.returncode == 130
    message = stderr.read_text(encoding="utf-8")
    assert "interrupted;" in message
    assert "run push again to send the rest" in message
    assert "Traceback" not in message
    assert not list(team.rglob(".*.part")), "each stopped upload removed its temporary file"
    assert all(name == sha for name, sha in remote_blobs(team).items())
    assert len(remote_blobs(team)) < len(digests)


def test_ci_pushes_to_a_bucket_and_a_host_syncs_from_it_alone(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same fleet over a real S3 server (moto): push and sync --from speak to any remote."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    remote = f"s3://{bucket}/prod"
    folder = tmp_path / "ci"
    files = project_with_remote(folder, mirror_root, tmp_path, remote=remote)
    ok(cli(folder, "sync"))

    pushed = json.loads(ok(cli(folder, "push", "--json")).stdout)
    held = json.loads(ok(cli(folder, "status", "--remote", "team", "--json")).stdout)
    since_settled(mirror)
    mirror.clear_log()
    deployed = host(tmp_path, folder, monkeypatch)
    synced = ok(cli(deployed, "-v", "sync", "--frozen", "--from", remote, "--no-hub"))

    assert pushed["remote"] == remote
    assert pushed["bytes"] == sum(len(data) for data in files.values())
    assert held["complete"] is True
    assert since_settled(mirror) == [], "nothing came from the mirror"
    ok(cli(deployed, "verify"))
    store = Store(tmp_path / "host-store")
    assert all(store.blob_path(hashlib.sha256(d).hexdigest()).read_bytes() == d for d in files.values())
    assert SECRET not in json.dumps(pushed) + json.dumps(held) + synced.stdout + synced.stderr
    assert "X-Amz-" not in synced.stdout + synced.stderr, "no signed URL either"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://ci:hunter2@models.example.org/team", "https://…@models.example.org/team"),
        ("s3://AKIDEXAMPLE:hunter2/x+y@models/prod", "s3://…@models/prod"),
        ("s3://models/prod?X-Amz-Signature=hunter2", "s3://models/prod?…"),
    ],
    ids=["https-userinfo", "s3-keys", "signed-query"],
)
def test_a_secret_in_a_from_url_is_refused_before_any_request_without_repeating_it(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    shown: str,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", mirror.url)  # any S3 request would land in its log too
    folder = tmp_path / "project"
    project_with_remote(folder, mirror_root, tmp_path)  # not locked yet: sync would ask the Hub first

    refused = cli(folder, "-v", "sync", "--from", url)

    assert refused.returncode == 2, refused.stderr
    assert (  # -v adds the traceback above it, which holds no secret either
        f"error: {shown}: a remote URL must not hold credentials (user:password@ or a token in the query)"
        in refused.stderr.splitlines()
    )
    assert "hunter2" not in refused.stderr + refused.stdout
    assert since_settled(mirror) == [], "nothing was asked of any server"
    assert not (folder / "models.lock").exists()


@pytest.mark.parametrize("command", [("push",), ("status", "--remote")])
def test_push_and_status_refuse_a_secret_in_the_remote_url_they_are_given(
    project: Path, command: tuple[str, ...]
) -> None:
    (project / "models.yaml").write_text("version: 1\nmodels: {}\n", encoding="utf-8")
    (project / "models.lock").write_text("version: 1\nmodels: {}\n", encoding="utf-8")

    refused = cli(project, *command, "file://backup:hunter2@nas/srv/models?token=hunter2")

    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith(
        "error: file://…@nas/srv/models?…: a remote URL must not hold credentials"
    )
    assert "hunter2" not in refused.stderr + refused.stdout


def killed_at_60_percent_then_rerun(
    folder: Path, store: Store, digest: str, size: int, syncing: tuple[str, ...], meter: Meter
) -> None:
    """Run ``syncing`` in ``folder``, SIGKILL it once 60% of the blob is checkpointed (nothing may
    sit in the store's blobs then), and run it again to the end with ``meter`` no longer pacing."""
    first, _ = start(folder, *syncing)
    try:
        wait_for(lambda: progress_done(store.progress_path(digest)) >= 0.6 * size, "60% checkpointed")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert not [p for p in (store.home / "blobs").rglob("*") if p.is_file()], "nothing half-written there"
    meter.rate = None
    ok(cli(folder, *syncing))


@pytest.mark.slow
def test_a_sync_from_a_bucket_killed_midway_resumes_and_the_bucket_serves_the_blob_about_once(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server's bytes are counted by a proxy in front of moto, which paces them so the host's
    sync can be killed midway. Killed with 60% checkpointed, a rerun from byte 0 would bring the
    count to 1.6 times the blob: the rerun resumes from the last checkpoint."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    remote = f"s3://{bucket}/prod"
    folder = tmp_path / "ci"
    data = project_with_remote(folder, mirror_root, tmp_path, remote=remote, padding=40_000_000)[
        "chat-Q4_K_M.gguf"
    ]
    digest = hashlib.sha256(data).hexdigest()
    ok(cli(folder, "sync", "--only", "chat"))
    ok(cli(folder, "push", "--only", "chat"))
    deployed = host(tmp_path, folder, monkeypatch)
    store = Store(tmp_path / "host-store")
    syncing = ("sync", "--frozen", "--only", "chat", "--from", remote, "--no-hub")

    with Meter(os.environ["AWS_ENDPOINT_URL"], rate=16e6) as meter:
        monkeypatch.setenv("AWS_ENDPOINT_URL", meter.url)
        killed_at_60_percent_then_rerun(deployed, store, digest, len(data), syncing, meter)
        served = meter.served
    assert store.blob_path(digest).read_bytes() == data
    assert len(data) <= served <= 1.5 * len(data), f"{served} bytes served for a {len(data)}-byte blob"


@pytest.mark.slow
def test_two_hosts_pushing_one_lock_to_a_bucket_at_once_both_succeed_and_no_object_is_replaced(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    bucket: str,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One blob fits a single conditional PUT, the other goes up in parts (above 16 MiB). The
    bucket keeps every version written, so a replaced object shows as a second version. The
    small blob is created once. The large one's two uploads both pass their last check (two
    parts, sent at once), so both may complete (obstore cannot make a completion conditional):
    each version is the whole blob, so no reader sees other bytes."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    keep_versions(moto_endpoint, bucket)
    remote = f"s3://{bucket}/prod"
    folder = tmp_path / "ci"
    files = project_with_remote(folder, mirror_root, tmp_path, remote=remote)
    big = write_tiny_gguf(tmp_path / "big.gguf", context_length=1000, padding=20_000_000).read_bytes()
    mirror_root.commit("org/chat", {"chat-Q4_K_M.gguf": big})
    files["chat-Q4_K_M.gguf"] = big
    ok(cli(folder, "sync"))

    reports = two_pushes_at_once(folder)
    uploaded = [b["sha256"] for report in reports for b in report["uploaded"]]
    small, large = (hashlib.sha256(files[f"{n}-Q4_K_M.gguf"]).hexdigest() for n in ("embed", "chat"))
    assert uploaded.count(small) == 1, "created by one of them, skipped by the other"
    assert versions(moto_endpoint, bucket, f"prod/{blob_key(small)}") == [files["embed-Q4_K_M.gguf"]]
    written = versions(moto_endpoint, bucket, f"prod/{blob_key(large)}")
    assert 1 <= len(written) == uploaded.count(large) <= 2
    assert all(version == big for version in written), "each write the whole blob"
