"""``api.sync`` and the other store use cases, in-process, against the mirror server.

Every byte below is a real (tiny) GGUF written by ``write_tiny_gguf``, committed to the mirror,
locked through the real ``huggingface_hub`` client and downloaded by our own downloader. The
request log of the mirror is the witness of what went over the network.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import helpers
import pytest
from helpers import blob, blob_files, home, sha256, small_disk, view, view_files, write_manifest

from alex_models import api
from alex_models._units import human_size
from alex_models.errors import IntegrityError, RemoteError, UsageError, UserError
from alex_models.ggufinfo import NotGGUFError
from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.tinymodels import write_tiny_gguf

HARNESSES = "/api/agent-harnesses"  # huggingface_hub's own lookup, not ours

ALPHA, BETA, TWIN, SPLIT = "org/alpha", "org/beta", "org/twin", "org/split"
PRIVATE, FAKE, MISLABEL, COPIED, COPIED_2 = (
    "org/private",
    "org/fake",
    "org/mislabel",
    "org/copied",
    "org/copied-2",
)
PRIVATE_TOKEN = "hf_private_secret_token"

ALPHA_FILE, BETA_FILE, TWIN_FILE = "alpha-Q4_K_M.gguf", "beta-Q4_K_M.gguf", "twin-Q4_K_M.gguf"
SHARDS = [f"s-Q8_0-{n:05d}-of-00003.gguf" for n in (1, 2, 3)]
PRIVATE_FILE, FAKE_FILE = "p-Q4_K_M.gguf", "fake-Q4_K_M.gguf"
MISLABELLED = ["x-Q8_0-00001-of-00002.gguf", "x-Q8_0-00002-of-00002.gguf"]
COPIES = ["c-Q8_0-00001-of-00002.gguf", "c-Q8_0-00002-of-00002.gguf"]

TWO = {"alpha": {"repo": ALPHA, "quant": "Q4_K_M"}, "beta": {"repo": BETA, "quant": "Q4_K_M"}}


# -- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Distinct small valid GGUF files, by a short name (the context length makes them differ)."""
    folder = tmp_path_factory.mktemp("ggufs")

    def make(name: str, context: int, split: tuple[int, int] | None = None) -> bytes:
        return write_tiny_gguf(folder / f"{name}.gguf", context_length=context, split=split).read_bytes()

    made = {
        "alpha": make("alpha", 1001),
        "beta": make("beta", 1002),
        "private": make("private", 1003),
        "x1": make("x1", 1004, (1, 2)),
        "x2-says-1": make("x2", 1005, (1, 2)),  # named shard 2, but its header says shard 1
        "y2": make("y2", 1006, (2, 2)),
    }
    for n in (1, 2, 3):
        made[f"s{n}"] = make(f"s{n}", 2000 + n, (n, 3))
    return made


@dataclass(frozen=True)
class Hub(helpers.Hub):
    """The shared ``Hub`` (files keyed ``repo/path``), with this module's request-log witnesses."""

    def settled(self) -> list[RequestRecord]:
        """Every request so far (harness lookups aside), once a request made now has been logged."""
        return [r for r in helpers.since_settled(self.server) if r.path != HARNESSES]

    def fresh(self) -> None:
        """Start a clean request log (after the last run's requests have landed)."""
        self.settled()
        self.server.clear_log()

    def cdn_gets(self) -> list[RequestRecord]:
        return [r for r in self.settled() if r.origin == "cdn" and r.method == "GET"]


@pytest.fixture
def hub(
    mirror_root: MirrorRoot, mirror: MirrorServer, ggufs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> Hub:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    files = {
        f"{ALPHA}/{ALPHA_FILE}": ggufs["alpha"],
        f"{BETA}/{BETA_FILE}": ggufs["beta"],
        f"{TWIN}/{TWIN_FILE}": ggufs["alpha"],  # the same bytes as alpha, in another repo
        **{f"{SPLIT}/{name}": ggufs[f"s{n}"] for n, name in enumerate(SHARDS, 1)},
        f"{PRIVATE}/{PRIVATE_FILE}": ggufs["private"],
        f"{FAKE}/{FAKE_FILE}": b"GGUX, but not a GGUF file at all\n" * 8,
        f"{MISLABEL}/{MISLABELLED[0]}": ggufs["x1"],
        f"{MISLABEL}/{MISLABELLED[1]}": ggufs["x2-says-1"],
        # A botched upload: shard 1 uploaded under both shard names (the same bytes twice).
        f"{COPIED}/{COPIES[0]}": ggufs["x1"],
        f"{COPIED}/{COPIES[1]}": ggufs["x1"],
        f"{COPIED_2}/{COPIES[0]}": ggufs["y2"],  # and shard 2 under both names
        f"{COPIED_2}/{COPIES[1]}": ggufs["y2"],
    }
    mirror_root.create_repo(PRIVATE, private=True, tokens=[PRIVATE_TOKEN])
    commits = {}
    for repo in (ALPHA, BETA, TWIN, SPLIT, PRIVATE, FAKE, MISLABEL, COPIED, COPIED_2):
        prefix = repo + "/"
        commits[repo] = mirror_root.commit(
            repo, {key.removeprefix(prefix): data for key, data in files.items() if key.startswith(prefix)}
        )
    return Hub(mirror_root, mirror, files, commits)


def label(repo: str, path: str) -> str:
    return f"{repo}/{path}"


def corrupt_in_place(path: Path) -> None:
    """Flip the first byte of a read-only blob, as a failing disk or a stray editor would."""
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    with path.open("r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


# -- sync: locking, reuse, --locked, --frozen ------------------------------------------------------


def test_sync_locks_first_then_downloads_every_file_into_blobs_and_views(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    result = api.sync(manifest)

    assert result.resolved == ("alpha", "beta")
    assert (project / "models.lock").exists()
    assert sorted(result.downloaded) == [label(ALPHA, ALPHA_FILE), label(BETA, BETA_FILE)]
    assert result.reused == ()
    alpha, beta = hub.files[f"{ALPHA}/{ALPHA_FILE}"], hub.files[f"{BETA}/{BETA_FILE}"]
    assert result.bytes_received == len(alpha) + len(beta)
    assert blob(sha256(alpha)).read_bytes() == alpha
    assert blob(sha256(beta)).read_bytes() == beta
    by_name = {m.name: m for m in result.models}
    assert by_name["alpha"].main == view(hub, ALPHA, ALPHA_FILE)
    assert view(hub, ALPHA, ALPHA_FILE).read_bytes() == alpha
    assert view(hub, BETA, BETA_FILE).read_bytes() == beta


def test_second_sync_downloads_nothing_and_reports_everything_reused(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)
    hub.fresh()

    again = api.sync(manifest)

    assert (again.resolved, again.downloaded, again.bytes_received) == ((), (), 0)
    assert sorted(again.reused) == [label(ALPHA, ALPHA_FILE), label(BETA, BETA_FILE)]
    assert hub.settled() == []  # not a single request: no lookup, no CDN byte


def test_locked_with_a_stale_lock_fails_naming_the_drift_and_downloads_nothing(
    hub: Hub, project: Path
) -> None:
    manifest = write_manifest(project, {"alpha": TWO["alpha"]})
    api.lock(manifest)
    write_manifest(project, TWO)
    hub.fresh()

    with pytest.raises(UserError) as caught:
        api.sync(manifest, api.SyncOptions(locked=True))

    assert caught.value.exit_code == 1
    assert "+ beta: new in the manifest" in caught.value.message
    assert caught.value.hint is not None
    assert "alex-models lock" in caught.value.hint
    assert hub.settled() == []
    assert blob_files() == []


def test_locked_without_any_lock_fails_and_downloads_nothing(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    with pytest.raises(UserError) as caught:
        api.sync(manifest, api.SyncOptions(locked=True))

    assert caught.value.exit_code == 1
    assert caught.value.message == f"{project / 'models.lock'} does not exist, but --locked was given"
    assert caught.value.hint is not None
    assert "alex-models lock" in caught.value.hint
    assert hub.settled() == []
    assert not (project / "models.lock").exists()
    assert blob_files() == []


def test_frozen_uses_the_lock_even_when_the_manifest_changed(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, {"alpha": TWO["alpha"]})
    api.lock(manifest)
    lock_bytes = (project / "models.lock").read_bytes()
    write_manifest(project, {"beta": TWO["beta"]})
    hub.fresh()

    result = api.sync(manifest, api.SyncOptions(frozen=True))

    assert [m.name for m in result.models] == ["alpha"]
    assert result.downloaded == (label(ALPHA, ALPHA_FILE),)
    assert (project / "models.lock").read_bytes() == lock_bytes
    assert [r.origin for r in hub.settled() if r.path.startswith("/api/")] == []  # never resolved


def test_frozen_needs_no_manifest_at_all(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, {"alpha": TWO["alpha"]})
    api.lock(manifest)
    manifest.unlink()

    result = api.sync(manifest, api.SyncOptions(frozen=True))

    assert [m.name for m in result.models] == ["alpha"]
    assert view(hub, ALPHA, ALPHA_FILE).read_bytes() == hub.files[f"{ALPHA}/{ALPHA_FILE}"]


def test_frozen_without_a_lock_fails_clearly(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    with pytest.raises(UserError) as caught:
        api.sync(manifest, api.SyncOptions(frozen=True))

    assert caught.value.exit_code == 1
    assert str(project / "models.lock") in caught.value.message
    assert "does not exist" in caught.value.message
    assert hub.settled() == []


def test_locked_and_frozen_together_is_a_usage_error(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    with pytest.raises(UsageError) as caught:
        api.sync(manifest, api.SyncOptions(locked=True, frozen=True))

    assert caught.value.exit_code == 2
    assert "--locked" in caught.value.message
    assert "--frozen" in caught.value.message


# -- offline ---------------------------------------------------------------------------------------


def test_offline_with_every_blob_present_succeeds_without_a_request(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)
    hub.fresh()

    result = api.sync(manifest, api.SyncOptions(offline=True))

    assert result.downloaded == ()
    assert sorted(m.name for m in result.models) == ["alpha", "beta"]
    assert hub.settled() == []


def test_offline_with_blobs_missing_names_the_missing_files_without_a_request(
    hub: Hub, project: Path
) -> None:
    manifest = write_manifest(project, TWO)
    api.lock(manifest)
    hub.fresh()

    with pytest.raises(UserError) as caught:
        api.sync(manifest, api.SyncOptions(offline=True))

    assert caught.value.exit_code == 1
    assert label(ALPHA, ALPHA_FILE) in caught.value.message
    assert label(BETA, BETA_FILE) in caught.value.message
    assert hub.settled() == []
    assert blob_files() == []


def test_hf_hub_offline_in_the_environment_acts_as_offline(
    hub: Hub, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_manifest(project, TWO)
    api.lock(manifest)
    hub.fresh()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(UserError) as caught:
        api.sync(manifest)

    assert "offline" in caught.value.message
    assert label(ALPHA, ALPHA_FILE) in caught.value.message
    assert hub.settled() == []


# -- only ------------------------------------------------------------------------------------------


def test_only_syncs_just_the_named_model(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    result = api.sync(manifest, api.SyncOptions(only=("alpha",)))

    assert [m.name for m in result.models] == ["alpha"]
    assert result.downloaded == (label(ALPHA, ALPHA_FILE),)
    assert blob(sha256(hub.files[f"{ALPHA}/{ALPHA_FILE}"])).exists()
    assert not blob(sha256(hub.files[f"{BETA}/{BETA_FILE}"])).exists()
    assert {r.path.rsplit("/", 1)[-1] for r in hub.cdn_gets()} == {ALPHA_FILE}


def test_only_with_an_unknown_name_errors_listing_the_models(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    with pytest.raises(UserError) as caught:
        api.sync(manifest, api.SyncOptions(only=("gamma",)))

    assert "gamma" in caught.value.message
    assert caught.value.hint == "locked models: alpha, beta"
    assert blob_files() == []


# -- the store: dedupe, split views, hard links ----------------------------------------------------


def test_identical_content_in_two_repos_is_downloaded_and_stored_once(hub: Hub, project: Path) -> None:
    manifest = write_manifest(
        project,
        {"alpha": TWO["alpha"], "twin": {"repo": TWIN, "quant": "Q4_K_M"}},
    )

    result = api.sync(manifest)

    assert len(result.downloaded) == 1
    assert len(hub.cdn_gets()) == 1
    assert len(blob_files()) == 1
    alpha_view, twin_view = view(hub, ALPHA, ALPHA_FILE), view(hub, TWIN, TWIN_FILE)
    assert alpha_view.stat().st_ino == twin_view.stat().st_ino == blob_files()[0].stat().st_ino


def test_split_model_shards_sit_side_by_side_and_main_is_the_first_shard(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, {"split": {"repo": SPLIT, "quant": "Q8_0"}})

    result = api.sync(manifest)

    (model,) = result.models
    folder = view(hub, SPLIT, SHARDS[0]).parent
    assert model.main == folder / SHARDS[0]
    assert sorted(p.name for p in folder.iterdir()) == SHARDS
    for n, name in enumerate(SHARDS, 1):
        assert (folder / name).read_bytes() == hub.files[f"{SPLIT}/{name}"], n


def test_views_are_read_only_hard_links_to_the_blobs(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    api.sync(manifest)

    for repo, path in ((ALPHA, ALPHA_FILE), (BETA, BETA_FILE)):
        linked = view(hub, repo, path)
        content = blob(sha256(hub.files[f"{repo}/{path}"]))
        assert not linked.is_symlink()
        assert linked.stat().st_ino == content.stat().st_ino
        assert stat.S_IMODE(content.stat().st_mode) & 0o222 == 0


def test_private_repo_syncs_with_hf_token_sent_to_the_api_and_never_to_the_cdn(
    hub: Hub, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", PRIVATE_TOKEN)
    manifest = write_manifest(project, {"private": {"repo": PRIVATE, "quant": "Q4_K_M"}})

    api.sync(manifest)

    assert view(hub, PRIVATE, PRIVATE_FILE).read_bytes() == hub.files[f"{PRIVATE}/{PRIVATE_FILE}"]
    log = hub.settled()
    cdn = [r for r in log if r.origin == "cdn"]
    api_side = [r for r in log if r.origin == "api"]
    assert cdn
    assert api_side
    assert [r.authorization for r in cdn] == [False] * len(cdn)
    assert [r.authorization for r in api_side] == [True] * len(api_side)
    assert PRIVATE_TOKEN not in (project / "models.lock").read_text(encoding="utf-8")


# -- GGUF checks -----------------------------------------------------------------------------------


def test_gguf_file_that_is_not_gguf_fails_and_nothing_is_stored(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, {"fake": {"repo": FAKE, "quant": "Q4_K_M"}})

    with pytest.raises(NotGGUFError) as caught:
        api.sync(manifest)

    assert isinstance(caught.value, IntegrityError)
    assert caught.value.exit_code == 3
    assert label(FAKE, FAKE_FILE) in caught.value.message
    assert blob_files() == []
    assert view_files() == []
    assert list((home() / "tmp").glob("*.part")) == []


def test_shard_whose_header_names_another_split_fails_and_no_view_appears(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, {"x": {"repo": MISLABEL, "quant": "Q8_0"}})

    with pytest.raises(NotGGUFError) as caught:
        api.sync(manifest)

    assert caught.value.exit_code == 3
    assert label(MISLABEL, MISLABELLED[1]) in caught.value.message
    assert "shard 2 of 2" in caught.value.message
    assert not blob(sha256(hub.files[f"{MISLABEL}/{MISLABELLED[1]}"])).exists()
    assert view_files() == []
    assert list((home() / "tmp").glob("*.part")) == []


@pytest.mark.parametrize(
    ("repo", "wrong", "says"),
    [
        (COPIED, COPIES[1], "shard 2 of 2, but its header says shard 1"),
        (COPIED_2, COPIES[0], "shard 1 of 2, but its header says shard 2"),
    ],
)
def test_one_shard_uploaded_under_both_shard_names_fails_naming_the_wrong_one(
    hub: Hub, project: Path, repo: str, wrong: str, says: str
) -> None:
    manifest = write_manifest(project, {"c": {"repo": repo, "quant": "Q8_0"}})

    with pytest.raises(NotGGUFError) as caught:
        api.sync(manifest)

    assert caught.value.message.startswith(f"{label(repo, wrong)}: named {says}")
    assert blob_files() == []
    assert view_files() == []
    assert blob_files() == []
    assert view_files() == []


# -- status ----------------------------------------------------------------------------------------


def test_status_reports_present_partial_missing_sizes_and_stale(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, {**TWO, "split": {"repo": SPLIT, "quant": "Q8_0"}})
    api.sync(manifest, api.SyncOptions(only=("alpha", "split")))
    shard_3 = hub.files[f"{SPLIT}/{SHARDS[2]}"]
    blob(sha256(shard_3)).chmod(0o644)
    blob(sha256(shard_3)).unlink()
    write_manifest(
        project, {**TWO, "split": {"repo": SPLIT, "quant": "Q8_0"}, "twin": {"repo": TWIN, "quant": "Q4_K_M"}}
    )

    result = api.status(manifest)

    states = {m.name: m for m in result.models}
    alpha, beta = states["alpha"], states["beta"]
    assert (alpha.state, alpha.files, alpha.present_files) == ("present", 1, 1)
    assert alpha.size == alpha.present_bytes == len(hub.files[f"{ALPHA}/{ALPHA_FILE}"])
    assert alpha.main == view(hub, ALPHA, ALPHA_FILE)
    assert (beta.state, beta.present_files, beta.present_bytes, beta.main) == ("missing", 0, 0, None)
    assert beta.size == len(hub.files[f"{BETA}/{BETA_FILE}"])
    split = states["split"]
    shard_sizes = [len(hub.files[f"{SPLIT}/{name}"]) for name in SHARDS]
    assert (split.state, split.files, split.present_files) == ("partial", 3, 2)
    assert (split.size, split.present_bytes) == (sum(shard_sizes), sum(shard_sizes[:2]))
    assert result.stale == ("+ twin: new in the manifest",)


def test_status_without_a_lock_is_a_user_error(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)

    with pytest.raises(UserError, match="does not exist"):
        api.status(manifest)


# -- verify ----------------------------------------------------------------------------------------


def test_verify_passes_on_a_synced_store(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)

    result = api.verify(manifest)

    assert (result.checked, result.corrupt, result.missing) == (2, (), ())


def test_verify_reports_a_blob_corrupted_in_place_removes_it_and_sync_restores_it(
    hub: Hub, project: Path
) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)
    alpha = hub.files[f"{ALPHA}/{ALPHA_FILE}"]
    corrupt_in_place(blob(sha256(alpha)))
    hub.fresh()

    found = api.verify(manifest)

    assert found.corrupt == (label(ALPHA, ALPHA_FILE),)
    assert not blob(sha256(alpha)).exists()
    assert not view(hub, ALPHA, ALPHA_FILE).exists()
    assert view(hub, BETA, BETA_FILE).exists()

    restored = api.sync(manifest)

    assert restored.downloaded == (label(ALPHA, ALPHA_FILE),)
    assert view(hub, ALPHA, ALPHA_FILE).read_bytes() == alpha
    assert api.verify(manifest).corrupt == ()
    assert [r.path.rsplit("/", 1)[-1] for r in hub.cdn_gets()] == [ALPHA_FILE]


def test_sync_does_not_trust_a_blob_changed_behind_its_back(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)
    alpha = hub.files[f"{ALPHA}/{ALPHA_FILE}"]
    corrupt_in_place(blob(sha256(alpha)))

    again = api.sync(manifest)

    assert again.downloaded == (label(ALPHA, ALPHA_FILE),)
    assert blob(sha256(alpha)).read_bytes() == alpha


# -- path ------------------------------------------------------------------------------------------


def test_model_path_is_the_view_of_the_first_shard(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, {"split": {"repo": SPLIT, "quant": "Q8_0"}, **TWO})
    api.sync(manifest)

    assert api.model_path("split", manifest) == view(hub, SPLIT, SHARDS[0])
    assert api.model_path("alpha", manifest) == view(hub, ALPHA, ALPHA_FILE)


def test_model_path_of_an_unknown_model_lists_the_locked_ones(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)

    with pytest.raises(UserError, match="no model named 'gamma'") as caught:
        api.model_path("gamma", manifest)

    assert caught.value.hint == "locked models: alpha, beta"


def test_model_path_of_a_locked_but_unsynced_model_says_to_sync(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest, api.SyncOptions(only=("alpha",)))

    with pytest.raises(UserError, match="'beta' is not synced") as caught:
        api.model_path("beta", manifest)

    assert caught.value.hint == "run 'alex-models sync'"


# -- gc --------------------------------------------------------------------------------------------


def test_gc_removes_what_a_dropped_model_left_and_dry_run_reports_the_same_removing_nothing(
    hub: Hub, project: Path
) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)
    write_manifest(project, {"alpha": TWO["alpha"]})
    api.sync(manifest)
    beta = hub.files[f"{BETA}/{BETA_FILE}"]
    before = (blob_files(), view_files())

    dry = api.gc(dry_run=True)

    assert (blob_files(), view_files()) == before
    assert (dry.removed_blobs, dry.removed_views, dry.bytes_freed, dry.dry_run) == (1, 1, len(beta), True)

    done = api.gc()

    assert (done.removed_blobs, done.removed_partials, done.removed_views, done.bytes_freed) == (
        dry.removed_blobs,
        dry.removed_partials,
        dry.removed_views,
        dry.bytes_freed,
    )
    assert done.kept_locks == (str(project / "models.lock"),)
    assert not blob(sha256(beta)).exists()
    assert not view(hub, BETA, BETA_FILE).exists()
    assert not view(hub, BETA, BETA_FILE).parent.exists()  # empty view folders go too
    assert blob(sha256(hub.files[f"{ALPHA}/{ALPHA_FILE}"])).exists()
    assert view(hub, ALPHA, ALPHA_FILE).exists()
    assert api.gc().removed_blobs == 0


def test_gc_keeps_what_another_registered_lock_still_references(
    hub: Hub, project: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-project"
    other.mkdir()
    api.sync(write_manifest(other, {"beta": TWO["beta"]}))
    manifest = write_manifest(project, TWO)
    api.sync(manifest)
    write_manifest(project, {"alpha": TWO["alpha"]})
    api.sync(manifest)

    result = api.gc()

    assert (result.removed_blobs, result.removed_views) == (0, 0)
    assert blob(sha256(hub.files[f"{BETA}/{BETA_FILE}"])).exists()


def test_gc_stops_protecting_the_blobs_of_a_lock_file_that_disappeared(hub: Hub, project: Path) -> None:
    manifest = write_manifest(project, TWO)
    api.sync(manifest)
    (project / "models.lock").unlink()

    result = api.gc()

    assert (result.removed_blobs, result.removed_views) == (2, 2)
    assert result.kept_locks == ()
    assert blob_files() == []
    assert view_files() == []


# -- pull ------------------------------------------------------------------------------------------


def test_pull_downloads_one_file_into_the_store_and_returns_its_view(hub: Hub) -> None:
    found = api.pull(ALPHA, ALPHA_FILE)

    assert found == view(hub, ALPHA, ALPHA_FILE)
    assert found.read_bytes() == hub.files[f"{ALPHA}/{ALPHA_FILE}"]
    assert blob_files() == [blob(sha256(hub.files[f"{ALPHA}/{ALPHA_FILE}"]))]


def test_pull_of_the_first_shard_brings_every_shard_and_places_links_in_a_directory(
    hub: Hub, tmp_path: Path
) -> None:
    target = tmp_path / "placed"

    found = api.pull(SPLIT, SHARDS[0], directory=target)

    assert found == target / SHARDS[0]
    assert sorted(p.name for p in target.iterdir()) == SHARDS
    for name in SHARDS:
        placed = target / name
        assert placed.read_bytes() == hub.files[f"{SPLIT}/{name}"]
        assert placed.stat().st_ino == view(hub, SPLIT, name).stat().st_ino


def test_pull_with_a_wrong_sha256_is_an_integrity_error_and_downloads_nothing(hub: Hub) -> None:
    with pytest.raises(IntegrityError) as caught:
        api.pull(ALPHA, ALPHA_FILE, sha256="0" * 64)

    assert caught.value.exit_code == 3
    assert sha256(hub.files[f"{ALPHA}/{ALPHA_FILE}"]) in caught.value.message
    assert blob_files() == []
    assert [r for r in hub.settled() if r.origin == "cdn"] == []


def test_pull_is_locked_by_the_resolver_so_a_bad_repo_id_or_revision_says_so_before_any_request(
    hub: Hub,
) -> None:
    hub.server.clear_log()
    with pytest.raises(UserError, match="'org alpha' is not a Hugging Face repo id"):
        api.pull("org alpha", ALPHA_FILE)
    with pytest.raises(UserError, match=r"'a\.\.b' is neither a branch or tag name"):
        api.pull(ALPHA, ALPHA_FILE, revision="a..b")
    assert hub.server.log == []


def test_pull_with_the_right_sha256_in_upper_case_succeeds(hub: Hub) -> None:
    alpha = hub.files[f"{ALPHA}/{ALPHA_FILE}"]

    found = api.pull(ALPHA, ALPHA_FILE, sha256=sha256(alpha).upper())

    assert found.read_bytes() == alpha


def test_gc_keeps_what_pull_fetched_until_the_pull_is_forgotten(hub: Hub) -> None:
    alpha = hub.files[f"{ALPHA}/{ALPHA_FILE}"]
    found = api.pull(ALPHA, ALPHA_FILE)
    pull_lock = home() / "pulls" / "org--alpha--alpha-Q4_K_M.gguf.lock"

    kept = api.gc()

    assert (kept.removed_blobs, kept.removed_views) == (0, 0)
    assert found.read_bytes() == alpha
    assert kept.kept_locks == (str(pull_lock),)

    dry = api.gc(dry_run=True, forget_pulls=True)

    assert dry.forgotten_pulls == (pull_lock,)
    assert found.exists()

    forgot = api.gc(forget_pulls=True)

    assert [item.path for item in forgot.blobs] == [blob(sha256(alpha))]
    assert [item.path for item in forgot.views] == [found]
    assert forgot.bytes_freed == len(alpha)
    assert not found.exists()
    assert list((home() / "pulls").iterdir()) == []


def test_deleting_one_pull_lock_lets_gc_reclaim_that_file_alone(hub: Hub) -> None:
    alpha = api.pull(ALPHA, ALPHA_FILE)
    beta = api.pull(BETA, BETA_FILE)
    (home() / "pulls" / "org--alpha--alpha-Q4_K_M.gguf.lock").unlink()

    result = api.gc()

    assert [item.path for item in result.views] == [alpha]
    assert not alpha.exists()
    assert beta.read_bytes() == hub.files[f"{BETA}/{BETA_FILE}"]


def test_pull_in_offline_mode_says_pull_needs_the_network_not_lock(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(RemoteError) as caught:
        api.pull(ALPHA, ALPHA_FILE)

    assert "offline mode is on (HF_HUB_OFFLINE)" in caught.value.message
    assert caught.value.hint == "pull needs the network: unset HF_HUB_OFFLINE to pull"
    assert hub.settled() == []


# -- disk space ------------------------------------------------------------------------------------

SMALL_DISK = 4 * 1024 * 1024


@pytest.fixture
def small_disk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ALEX_MODELS_HOME on a real 4 MiB tmpfs. Needs root (or CAP_SYS_ADMIN): fails loudly without."""
    with small_disk(tmp_path / "small-disk", SMALL_DISK, monkeypatch) as home:
        yield home


@pytest.mark.linux("a tmpfs mount, for a small disk")
def test_sync_fails_early_naming_the_bytes_needed_when_the_disk_is_too_small(
    hub: Hub, project: Path, small_disk_home: Path, tmp_path: Path
) -> None:
    big = write_tiny_gguf(tmp_path / "big.gguf", padding=6 * 1024 * 1024)
    size = big.stat().st_size
    hub.root.commit("org/big", {"big-Q4_K_M.gguf": big})
    manifest = write_manifest(project, {"big": {"repo": "org/big", "quant": "Q4_K_M"}})
    api.lock(manifest)
    hub.fresh()

    with pytest.raises(UserError) as caught:
        api.sync(manifest)

    assert f"{human_size(size)} needed" in caught.value.message
    assert str(small_disk_home) in caught.value.message
    assert [r for r in hub.settled() if r.origin == "cdn"] == []
    assert list((small_disk_home / "tmp").iterdir()) == []
