"""``alex-models lock`` end to end: the real ``huggingface_hub`` client against the mirror server.

Most tests call ``alex_models.api.lock`` in-process and read the written ``models.lock`` back;
the last ones run the installed console script as a user would. Every commit id below is the one
``MirrorRoot`` returned, and every size and SHA256 is computed here from the bytes committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import cli, write_manifest

from alex_models import api
from alex_models._retry import RetryPolicy
from alex_models.errors import RemoteError, UserError
from alex_models.hub import HubRemote
from alex_models.lock import Lock, LockedModel, loads
from alex_models.manifest import parse_manifest
from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.resolve import ResolveError

HARNESSES = "/api/agent-harnesses"  # huggingface_hub's own telemetry lookup, not ours

PLAIN = "org/plain"
OTHER = "org/other"
SPLIT = "org/split"
BROKEN_SPLIT = "org/broken-split"
AMBIGUOUS = "org/ambiguous"
PRIVATE = "org/private"
GATED = "org/gated"

Q4_V1 = b"GGUF plain Q4_K_M, first version\n" * 40
Q4_V2 = b"GGUF plain Q4_K_M, second version\n" * 40
Q4_V3 = b"GGUF plain Q4_K_M, third version\n" * 40
Q8 = b"GGUF plain Q8_0\n" * 64
README = b"# plain\nA tiny test model.\n"
CONFIG = b'{"context_length": 4096}\n'
NOTES = b"plain notes, served as a plain git file\n"
OTHER_V1 = b"GGUF other Q4_K_M, first version\n" * 30
OTHER_V2 = b"GGUF other Q4_K_M, second version\n" * 30
SHARD_1 = b"GGUF split Q8_0 shard 1\n" * 50
SHARD_2 = b"GGUF split Q8_0 shard 2\n" * 20
SPLIT_Q4 = b"GGUF split Q4_K_M\n" * 30


@dataclass(frozen=True)
class Hub:
    """The mirror, its root, and the commits the ``hub`` fixture made."""

    root: MirrorRoot
    server: MirrorServer
    plain_v1: str
    """org/plain at tag v1."""
    plain_v2: str
    """org/plain at main: Q4_K_M changed since v1."""
    other: str
    split: str
    private: str
    gated: str

    def move_main(self, repo: str, files: Mapping[str, bytes]) -> str:
        """Commit ``files`` on top of main and move main there."""
        return self.root.commit(repo, dict(files), message="moved")

    def requests(self, expected: int) -> list[RequestRecord]:
        """The server's log, once at least ``expected`` records (harness lookups aside) have landed."""
        self.server.wait_log(lambda log: len(_ours(log)) >= expected)
        return _ours(self.server.log)

    def settle(self, expected: int) -> None:
        """Wait for ``expected`` records of the last run, then start a clean log."""
        self.requests(expected)
        self.server.clear_log()


def _ours(log: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in log if r.path != HARNESSES]


@pytest.fixture
def hub(mirror_root: MirrorRoot, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """A handful of repos on the mirror, and HF_ENDPOINT pointing at it."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    plain_files = {
        "m-Q4_K_M.gguf": Q4_V1,
        "m-Q8_0.gguf": Q8,
        "README.md": README,
        "config.json": CONFIG,
        "notes.txt": NOTES,
    }
    plain_v1 = mirror_root.commit(PLAIN, plain_files, message="v1")
    mirror_root.set_tag(PLAIN, "v1", plain_v1)
    plain_v2 = mirror_root.commit(PLAIN, {"m-Q4_K_M.gguf": Q4_V2}, message="v2")
    other = mirror_root.commit(OTHER, {"o-Q4_K_M.gguf": OTHER_V1})
    split = mirror_root.commit(
        SPLIT,
        {
            "m-Q8_0-00001-of-00002.gguf": SHARD_1,
            "m-Q8_0-00002-of-00002.gguf": SHARD_2,
            "m-Q4_K_M.gguf": SPLIT_Q4,
        },
    )
    mirror_root.commit(BROKEN_SPLIT, {"m-Q8_0-00001-of-00002.gguf": SHARD_1})
    mirror_root.commit(AMBIGUOUS, {"a-Q4_K_M.gguf": b"GGUF a\n", "b-Q4_K_M.gguf": b"GGUF b\n"})
    mirror_root.create_repo(PRIVATE, private=True, tokens=["hf_private"])
    private = mirror_root.commit(PRIVATE, {"p-Q4_K_M.gguf": b"GGUF private\n" * 10})
    mirror_root.create_repo(GATED, gated="auto", tokens=["hf_ok"])
    gated = mirror_root.commit(GATED, {"g-Q4_K_M.gguf": b"GGUF gated\n" * 10})
    return Hub(mirror_root, mirror, plain_v1, plain_v2, other, split, private, gated)


@pytest.fixture
def fast_remote(hub: Hub) -> Iterator[HubRemote]:
    """A ``HubRemote`` on the mirror whose retries wait milliseconds, not seconds."""
    remote = HubRemote(hub.server.url, retry=RetryPolicy(attempts=3, base=0.01))
    yield remote
    remote.close()


def listing(directory: Path) -> list[str]:
    """Every name in ``directory``, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())


def lock_bytes(directory: Path) -> bytes:
    return (directory / "models.lock").read_bytes()


def read_lock(directory: Path) -> Lock:
    return loads((directory / "models.lock").read_text(encoding="utf-8"))


def facts(entry: LockedModel) -> dict[str, tuple[int, str]]:
    """Each locked file's (size, sha256), by path."""
    return {f.path: (f.size, f.sha256) for f in entry.files}


def expected(files: Mapping[str, bytes]) -> dict[str, tuple[int, str]]:
    """What ``facts`` should be for these committed bytes."""
    return {path: (len(data), hashlib.sha256(data).hexdigest()) for path, data in files.items()}


def api_paths(records: list[RequestRecord]) -> list[tuple[str, str]]:
    return sorted((r.method, r.path) for r in records)


# -- revisions and files ---------------------------------------------------------------------------


@pytest.mark.parametrize(("revision", "pinned"), [("main", "v2"), ("v1", "v1"), ("commit", "v1")])
def test_branch_tag_and_commit_revisions_pin_the_commit_they_name(
    hub: Hub, project: Path, revision: str, pinned: str
) -> None:
    revision = hub.plain_v1 if revision == "commit" else revision
    commit, q4 = (hub.plain_v1, Q4_V1) if pinned == "v1" else (hub.plain_v2, Q4_V2)
    manifest = write_manifest(project, {"plain": {"repo": PLAIN, "revision": revision, "quant": "Q4_K_M"}})

    api.lock(manifest)

    entry = read_lock(project).models["plain"]
    assert (entry.source, entry.repo, entry.revision, entry.commit) == ("hf", PLAIN, revision, commit)
    assert facts(entry) == expected({"m-Q4_K_M.gguf": q4})


def test_files_hashes_each_non_lfs_file_with_one_download_and_lfs_files_from_the_listing(
    hub: Hub, project: Path
) -> None:
    manifest = write_manifest(
        project, {"plain": {"repo": PLAIN, "files": ["README.md", "config.json", "m-Q4_K_M.gguf"]}}
    )

    api.lock(manifest)

    entry = read_lock(project).models["plain"]
    assert facts(entry) == expected({"README.md": README, "config.json": CONFIG, "m-Q4_K_M.gguf": Q4_V2})
    assert {f.path: f.role for f in entry.files} == {
        "README.md": "file",
        "config.json": "file",
        "m-Q4_K_M.gguf": "model",
    }
    resolves = [r for r in hub.requests(3) if "/resolve/" in r.path]
    assert api_paths(resolves) == [
        ("GET", f"/{PLAIN}/resolve/{hub.plain_v2}/README.md"),
        ("GET", f"/{PLAIN}/resolve/{hub.plain_v2}/config.json"),
    ]


@pytest.mark.parametrize("selector", [{"quant": "Q8_0"}, {"file": "m-Q8_0-00001-of-00002.gguf"}])
def test_split_shards_are_locked_together(hub: Hub, project: Path, selector: dict[str, str]) -> None:
    manifest = write_manifest(project, {"split": {"repo": SPLIT, **selector}})

    api.lock(manifest)

    entry = read_lock(project).models["split"]
    assert entry.commit == hub.split
    assert facts(entry) == expected(
        {"m-Q8_0-00001-of-00002.gguf": SHARD_1, "m-Q8_0-00002-of-00002.gguf": SHARD_2}
    )
    assert [f.role for f in entry.files] == ["model", "model"]


# -- access: private and gated repos ---------------------------------------------------------------


def test_private_repo_locks_with_a_token_it_lists(
    hub: Hub, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_private")
    manifest = write_manifest(project, {"private": {"repo": PRIVATE, "quant": "Q4_K_M"}})

    api.lock(manifest)

    assert read_lock(project).models["private"].commit == hub.private


def test_gated_repo_locks_with_an_approved_token(
    hub: Hub, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_ok")
    manifest = write_manifest(project, {"gated": {"repo": GATED, "quant": "Q4_K_M"}})

    api.lock(manifest)

    assert read_lock(project).models["gated"].commit == hub.gated


# -- failures: a clear error, and nothing written ---------------------------------------------------


@dataclass(frozen=True)
class Failure:
    entry: dict[str, object]
    token: str | None
    error: type[UserError]
    message: tuple[str, ...]
    hint: tuple[str, ...] = ()


FAILURES = {
    "private-without-token": Failure(
        {"repo": PRIVATE, "quant": "Q4_K_M"},
        None,
        UserError,
        (f"repo {PRIVATE} not found", "private and no token is set"),
        ("HF_TOKEN",),
    ),
    "gated-without-token": Failure(
        {"repo": GATED, "quant": "Q4_K_M"},
        None,
        UserError,
        (f"{GATED} is a gated repo", "no token is set"),
        ("accept its terms", "HF_TOKEN"),
    ),
    "gated-unapproved-token": Failure(
        {"repo": GATED, "quant": "Q4_K_M"},
        "hf_private",  # a valid token (the private repo lists it), not granted on the gated repo
        UserError,
        (f"{GATED} is a gated repo", "not been granted access"),
        ("accept its terms", "HF_TOKEN"),
    ),
    "unknown-repo": Failure(
        {"repo": "org/nope", "quant": "Q4_K_M"}, None, UserError, ("repo org/nope not found",), ("repo id",)
    ),
    "missing-revision": Failure(
        {"repo": PLAIN, "revision": "nope", "quant": "Q4_K_M"},
        None,
        UserError,
        (f"{PLAIN} has no revision 'nope'",),
        ("branch, tag or commit",),
    ),
    "missing-file": Failure(
        {"repo": PLAIN, "file": "nope.gguf"},
        None,
        ResolveError,
        (PLAIN, "has no file 'nope.gguf'"),
        ("m-Q4_K_M.gguf",),
    ),
    "missing-shard": Failure(
        {"repo": BROKEN_SPLIT, "quant": "Q8_0"},
        None,
        ResolveError,
        (BROKEN_SPLIT, "split model m-Q8_0 is incomplete", "shard(s) 2 of 2 missing"),
    ),
    "quant-ambiguity": Failure(
        {"repo": AMBIGUOUS, "quant": "Q4_K_M"},
        None,
        ResolveError,
        ("quant Q4_K_M matches 2 different models", "a-Q4_K_M.gguf", "b-Q4_K_M.gguf"),
        ("file:",),
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
def test_failing_lock_raises_a_clear_error_and_writes_no_lock(
    hub: Hub, project: Path, monkeypatch: pytest.MonkeyPatch, case: Failure
) -> None:
    if case.token is not None:
        monkeypatch.setenv("HF_TOKEN", case.token)
    manifest = write_manifest(project, {"bad": case.entry})

    with pytest.raises(UserError) as caught:
        api.lock(manifest)

    assert type(caught.value) is case.error
    for fragment in case.message:
        assert fragment in caught.value.message
    for fragment in case.hint:
        assert fragment in (caught.value.hint or "")
    assert listing(project) == ["models.yaml"]


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
def test_failing_lock_leaves_the_existing_lock_byte_identical(
    hub: Hub, project: Path, monkeypatch: pytest.MonkeyPatch, case: Failure
) -> None:
    good = {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}}
    api.lock(write_manifest(project, good))
    before = lock_bytes(project)
    if case.token is not None:
        monkeypatch.setenv("HF_TOKEN", case.token)
    manifest = write_manifest(project, {**good, "bad": case.entry})

    with pytest.raises(case.error):
        api.lock(manifest)

    assert lock_bytes(project) == before
    assert listing(project) == ["models.lock", "models.yaml"]


# -- an existing lock is respected -----------------------------------------------------------------

TWO_MODELS = {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}, "other": {"repo": OTHER, "quant": "Q4_K_M"}}


def test_moved_branch_leaves_the_lock_unchanged_without_any_request(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO_MODELS)
    api.lock(manifest)
    before = lock_bytes(project)
    hub.settle(2)
    hub.move_main(PLAIN, {"m-Q4_K_M.gguf": Q4_V3})

    result = api.lock(manifest)

    assert lock_bytes(project) == before
    assert (result.resolved, result.written, result.stale) == ((), False, False)
    assert _ours(hub.server.log) == []


def test_upgrade_of_one_model_picks_its_moved_branch_and_keeps_the_other_pins(
    hub: Hub, project: Path
) -> None:
    manifest = write_manifest(project, TWO_MODELS)
    api.lock(manifest)
    plain_v3 = hub.move_main(PLAIN, {"m-Q4_K_M.gguf": Q4_V3})
    hub.move_main(OTHER, {"o-Q4_K_M.gguf": OTHER_V2})

    result = api.lock(manifest, upgrade=frozenset({"plain"}))

    models = read_lock(project).models
    assert result.resolved == ("plain",)
    assert models["plain"].commit == plain_v3
    assert facts(models["plain"]) == expected({"m-Q4_K_M.gguf": Q4_V3})
    assert models["other"].commit == hub.other


def test_upgrade_all_picks_every_moved_branch(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO_MODELS)
    api.lock(manifest)
    plain_v3 = hub.move_main(PLAIN, {"m-Q4_K_M.gguf": Q4_V3})
    other_v2 = hub.move_main(OTHER, {"o-Q4_K_M.gguf": OTHER_V2})

    result = api.lock(manifest, upgrade=True)

    models = read_lock(project).models
    assert result.resolved == ("other", "plain")
    assert (models["plain"].commit, models["other"].commit) == (plain_v3, other_v2)
    assert facts(models["other"]) == expected({"o-Q4_K_M.gguf": OTHER_V2})


def test_edited_entry_alone_is_resolved_again_and_the_others_keep_their_pins(hub: Hub, project: Path) -> None:
    api.lock(write_manifest(project, TWO_MODELS))
    other_before = read_lock(project).models["other"]
    plain_v3 = hub.move_main(PLAIN, {"m-Q4_K_M.gguf": Q4_V3})
    hub.move_main(OTHER, {"o-Q4_K_M.gguf": OTHER_V2})

    edited = {**TWO_MODELS, "plain": {"repo": PLAIN, "quant": "Q8_0"}}
    result = api.lock(write_manifest(project, edited))

    models = read_lock(project).models
    assert result.resolved == ("plain",)
    assert models["plain"].commit == plain_v3
    assert facts(models["plain"]) == expected({"m-Q8_0.gguf": Q8})
    assert models["other"] == other_before
    assert models["other"].commit == hub.other


def test_removed_model_is_dropped_and_the_others_keep_their_entries(hub: Hub, project: Path) -> None:
    api.lock(write_manifest(project, TWO_MODELS))
    plain_before = read_lock(project).models["plain"]
    hub.move_main(PLAIN, {"m-Q4_K_M.gguf": Q4_V3})

    result = api.lock(write_manifest(project, {"plain": TWO_MODELS["plain"]}))

    assert result.written
    assert read_lock(project).models == {"plain": plain_before}


# -- determinism -----------------------------------------------------------------------------------

THREE_MODELS = {**TWO_MODELS, "split": {"repo": SPLIT, "quant": "Q8_0"}}


def test_same_manifest_locked_in_two_directories_gives_identical_bytes(hub: Hub, project: Path) -> None:
    api.lock(write_manifest(project / "one", THREE_MODELS))
    api.lock(write_manifest(project / "two", THREE_MODELS))

    assert lock_bytes(project / "one") == lock_bytes(project / "two")


def test_reordered_models_give_identical_lock_bytes(hub: Hub, project: Path) -> None:
    reordered = {name: THREE_MODELS[name] for name in ("split", "plain", "other")}
    assert list(reordered) != list(THREE_MODELS)

    api.lock(write_manifest(project / "one", THREE_MODELS))
    api.lock(write_manifest(project / "two", reordered))

    assert lock_bytes(project / "one") == lock_bytes(project / "two")


# -- request count ---------------------------------------------------------------------------------


def test_five_repos_cost_exactly_one_model_info_request_each(hub: Hub, project: Path) -> None:
    """Measured: locking 5 models from 5 distinct repos makes 5 requests in all, one
    ``GET /api/models/<repo>/revision/main?blobs=true`` per repo (commit, sizes and LFS SHA256 in
    one answer), and nothing else (huggingface_hub's own ``/api/agent-harnesses`` lookup aside)."""
    repos = [f"org/count-{n}" for n in range(5)]
    for n, repo in enumerate(repos):
        hub.root.commit(repo, {f"c{n}-Q4_K_M.gguf": f"GGUF count {n}\n".encode()})
    manifest = write_manifest(
        project, {f"m{n}": {"repo": repo, "quant": "Q4_K_M"} for n, repo in enumerate(repos)}
    )

    api.lock(manifest)

    records = hub.requests(5)
    assert api_paths(records) == [("GET", f"/api/models/{repo}/revision/main") for repo in repos]
    assert all(r.status == 200 for r in records)


def test_gated_repo_adds_exactly_one_auth_check_request(
    hub: Hub, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Measured: a gated repo costs 2 requests: its model info and one ``auth-check``."""
    monkeypatch.setenv("HF_TOKEN", "hf_ok")

    api.lock(write_manifest(project, {"gated": {"repo": GATED, "quant": "Q4_K_M"}}))

    assert api_paths(hub.requests(2)) == [
        ("GET", f"/api/models/{GATED}/auth-check"),
        ("GET", f"/api/models/{GATED}/revision/main"),
    ]


# -- retries ---------------------------------------------------------------------------------------


def test_two_transient_503s_are_retried_and_the_lock_succeeds(hub: Hub, project: Path) -> None:
    hub.server.faults.add("status=503,times=2,on=api")

    api.lock(write_manifest(project, {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}}))

    assert read_lock(project).models["plain"].commit == hub.plain_v2
    assert [r.status for r in hub.requests(3)] == [503, 503, 200]


def test_permanent_503_fails_with_remote_error_exit_4(
    hub: Hub, project: Path, fast_remote: HubRemote
) -> None:
    hub.server.faults.add("status=503,on=api")
    manifest = write_manifest(project, {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}})

    with pytest.raises(RemoteError) as caught:
        api.lock(manifest, remote=fast_remote)

    assert caught.value.exit_code == 4
    assert "503" in caught.value.message
    assert listing(project) == ["models.yaml"]


def test_429_on_metadata_waits_the_retry_after_the_hub_asked_for(hub: Hub, project: Path) -> None:
    hub.server.faults.add("rate-limit=7,times=1,on=api")
    waits: list[float] = []
    remote = HubRemote(hub.server.url, retry=RetryPolicy(sleep=waits.append))

    try:
        api.lock(write_manifest(project, {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}}), remote=remote)
    finally:
        remote.close()

    assert read_lock(project).models["plain"].commit == hub.plain_v2
    assert [r.status for r in hub.requests(2)][:2] == [429, 200]
    assert waits == [7.0]  # Retry-After: 7, not the backoff (which starts under a second)


# -- url sources -----------------------------------------------------------------------------------


def test_url_model_is_locked_with_the_size_and_sha256_of_its_bytes(hub: Hub, project: Path) -> None:
    url = f"{hub.server.url}/{PLAIN}/resolve/main/notes.txt"

    api.lock(write_manifest(project, {"notes": {"url": url}}))

    entry = read_lock(project).models["notes"]
    assert (entry.source, entry.url, entry.repo, entry.commit) == ("url", url, None, None)
    assert facts(entry) == expected({"notes.txt": NOTES})


def test_url_model_with_a_pinned_sha256_is_trusted_and_only_sized_with_a_head(
    hub: Hub, project: Path
) -> None:
    # A pinned hash is taken as the manifest's word (here a wrong one): lock asks only for the
    # size; the bytes are checked against it when they are downloaded, by sync.
    url = f"{hub.server.url}/{PLAIN}/resolve/main/notes.txt"
    pinned = "0" * 64

    api.lock(write_manifest(project, {"notes": {"url": url, "sha256": pinned}}))

    assert facts(read_lock(project).models["notes"]) == {"notes.txt": (len(NOTES), pinned)}
    assert api_paths(hub.requests(1)) == [("HEAD", f"/{PLAIN}/resolve/main/notes.txt")]


def test_url_model_that_answers_404_is_a_user_error_with_a_hint(hub: Hub, project: Path) -> None:
    url = f"{hub.server.url}/{PLAIN}/resolve/main/no-such-file.txt"

    with pytest.raises(UserError) as caught:
        api.lock(write_manifest(project, {"notes": {"url": url}}))

    assert caught.value.exit_code == 1
    assert "answered 404" in caught.value.message
    assert caught.value.hint == "check the 'url' in models.yaml"
    assert listing(project) == ["models.yaml"]


@pytest.mark.filterwarnings("error::ResourceWarning")
def test_lock_closes_the_connections_it_opened(hub: Hub, project: Path) -> None:
    # An unclosed pooled socket warns when collected; as an error it fails this test.
    manifest = write_manifest(
        project,
        {
            "plain": {"repo": PLAIN, "files": ["README.md"]},
            "notes": {"url": f"{hub.server.url}/{PLAIN}/resolve/main/notes.txt"},
        },
    )

    api.lock(manifest)

    assert sorted(read_lock(project).models) == ["notes", "plain"]


# -- the command line ------------------------------------------------------------------------------


PLAIN_ONLY = {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}}


def test_cli_check_before_locking_exits_1_names_the_new_model_and_writes_nothing(
    hub: Hub, project: Path
) -> None:
    write_manifest(project, PLAIN_ONLY)

    result = cli(project, "lock", "--check")

    assert result.returncode == 1
    assert "  + plain: new in the manifest" in result.stderr.splitlines()
    assert listing(project) == ["models.yaml"]


def test_cli_lock_writes_the_lock_and_check_then_exits_0(hub: Hub, project: Path) -> None:
    write_manifest(project, PLAIN_ONLY)

    locked = cli(project, "lock")
    checked = cli(project, "lock", "--check")

    assert (locked.returncode, checked.returncode) == (0, 0), locked.stderr + checked.stderr
    assert read_lock(project).models["plain"].commit == hub.plain_v2


def test_cli_lock_json_reports_lock_stale_drift_resolved_written_changes(hub: Hub, project: Path) -> None:
    write_manifest(project, PLAIN_ONLY)

    result = cli(project, "lock", "--json")

    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    q4 = {"role": "model", "size": len(Q4_V2), "sha256": hashlib.sha256(Q4_V2).hexdigest()}
    pinned = {
        "source": "hf",
        "repo": PLAIN,
        "revision": "main",
        "commit": hub.plain_v2,
        "url": None,
        "oci": None,
        "digest": None,
    }
    assert payload == {
        "format": 1,
        "kind": "lock",
        "lock": "models.lock",
        "stale": True,
        "drift": [{"name": "plain", "kind": "added", "change": "+ plain: new in the manifest"}],
        "resolved": ["plain"],
        "written": True,
        "changes": [
            {
                "name": "plain",
                "change": "added",
                "before": None,
                "after": pinned,
                "files": [{"path": "m-Q4_K_M.gguf", "change": "added", "before": None, "after": q4}],
            }
        ],
    }


def test_cli_manifest_typo_is_one_error_line_with_position_and_a_hint(hub: Hub, project: Path) -> None:
    (project / "models.yaml").write_text(
        "version: 1\nmodels:\n  plain:\n    repo: org/plain\n    qaunt: Q4_K_M\n", encoding="utf-8"
    )

    result = cli(project, "lock")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: models.yaml:5:5: unknown key 'qaunt' in models.plain",
        "hint: did you mean 'quant'?",
    ]
    assert listing(project) == ["models.yaml"]


def test_cli_add_appends_the_model_keeps_comments_and_locks(hub: Hub, project: Path) -> None:
    original = (
        "# Our models: keep this comment.\n"
        "version: 1\n"
        "models:\n"
        "  plain:            # the small one\n"
        "    repo: org/plain\n"
        "    quant: Q4_K_M\n"
    )
    (project / "models.yaml").write_text(original, encoding="utf-8")

    result = cli(project, "add", OTHER, "--quant", "Q4_K_M")

    assert result.returncode == 0, result.stderr
    text = (project / "models.yaml").read_text(encoding="utf-8")
    assert text.startswith(original)
    manifest = parse_manifest(text)
    assert list(manifest.models) == ["plain", "other"]
    assert (manifest.models["other"].repo, manifest.models["other"].quant) == (OTHER, "Q4_K_M")
    assert read_lock(project).models["other"].commit == hub.other


def test_cli_add_of_a_missing_repo_fails_and_leaves_the_manifest_byte_identical(
    hub: Hub, project: Path
) -> None:
    manifest = write_manifest(project, PLAIN_ONLY)
    before = manifest.read_bytes()

    result = cli(project, "add", "org/nope", "--quant", "Q4_K_M")

    assert result.returncode == 1
    assert result.stderr.startswith("error: repo org/nope not found")
    assert "Traceback" not in result.stderr
    assert manifest.read_bytes() == before
    assert listing(project) == ["models.yaml"]


@pytest.mark.parametrize(
    ("files", "quant", "message", "hint"),
    [
        (
            [],
            None,
            "nothing to add from org/plain: give the files to add, or --quant",
            "e.g. 'alex-models add org/plain --quant Q4_K_M' (or name a file: '… org/plain model.gguf')",
        ),
        (
            ["a.gguf"],
            "Q8_0",
            "give the files to add from org/plain, or --quant, but not both",
            "e.g. 'alex-models add org/plain --quant Q8_0'",
        ),
    ],
    ids=["neither", "both"],
)
def test_add_says_which_of_files_or_quant_is_wrong(
    project: Path, files: list[str], quant: str | None, message: str, hint: str
) -> None:
    manifest = write_manifest(project, PLAIN_ONLY)
    before = manifest.read_bytes()

    with pytest.raises(UserError) as caught:
        api.add(PLAIN, files, quant=quant, manifest_path=manifest)

    assert (caught.value.message, caught.value.hint) == (message, hint)
    assert manifest.read_bytes() == before


def test_cli_init_then_add_locks_only_the_added_model_inside_models(hub: Hub, project: Path) -> None:
    init = cli(project, "init")
    starter = (project / "models.yaml").read_text(encoding="utf-8")

    added = cli(project, "add", OTHER, "--quant", "Q4_K_M")

    assert init.returncode == 0, init.stderr
    assert parse_manifest(starter).models == {}  # the template's models are commented examples
    assert added.returncode == 0, added.stderr
    assert list(read_lock(project).models) == ["other"]
    lines = (project / "models.yaml").read_text(encoding="utf-8").splitlines()
    entry = lines.index("  other:")
    assert lines[lines.index("models:") + 1] == "  other:"
    assert lines[entry : entry + 3] == ["  other:", f"    repo: {OTHER}", "    quant: Q4_K_M"]
    assert entry < lines.index("# emit:")
    assert [line for line in lines if line.lstrip().startswith("#")] == [
        line for line in starter.splitlines() if line.lstrip().startswith("#")
    ]  # every comment kept, in order
