"""The pure resolver over hand-built facts: file selection, lock semantics, determinism."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alex_models._fs import portable_name_problem
from alex_models.lock import Lock, dumps
from alex_models.manifest import Manifest, ModelInput, parse_manifest
from alex_models.remote import Facts, RemoteFile, RepoSnapshot, UrlFile
from alex_models.resolve import ResolveError, plan, resolve, select, unhashed, url_filename

REPO = "org/model-GGUF"
C1 = "a1" * 20
C2 = "b2" * 20
WHERE = f"model 'm': {REPO} at main ({C1[:12]})"
URL = "https://x.org/files/u.gguf"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def remote_file(path: str, salt: str = "") -> RemoteFile:
    """A .gguf is an LFS file (the Hub reports its SHA256); anything else is a plain git file."""
    lfs = path.lower().endswith(".gguf")
    return RemoteFile(path=path, size=len(path + salt), sha256=sha(path + salt) if lfs else None)


def snapshot(*paths: str, repo: str = REPO, commit: str = C1, salt: str = "") -> RepoSnapshot:
    return RepoSnapshot(
        repo=repo, revision="main", commit=commit, files=tuple(remote_file(p, salt) for p in paths)
    )


def wanted(**fields: object) -> ModelInput:
    return ModelInput.model_validate({"repo": REPO, "revision": "main", **fields})


def picked(fields: dict[str, object], paths: list[str]) -> list[tuple[str, str]]:
    return [(f.path, role) for f, role in select("m", wanted(**fields), snapshot(*paths))]


def manifest(*entries: str) -> Manifest:
    return parse_manifest("version: 1\nmodels:\n" + "".join(f"  {entry}\n" for entry in entries))


def shards(stem: str, count: int, *numbers: int) -> list[str]:
    return [f"{stem}-{no:05d}-of-{count:05d}.gguf" for no in numbers or range(1, count + 1)]


# --- select --------------------------------------------------------------------------------------------

# fmt: off
SELECTED = [
    # id, manifest fields, the repo's files, what is picked (path, role)
    ("quant-dash", {"quant": "Q4_K_M"}, ["m-Q4_K_M.gguf", "m-Q8_0.gguf", "README.md"], [("m-Q4_K_M.gguf", "model")]),
    ("quant-any-case", {"quant": "Q4_K_M"}, ["m.q4_k_m.gguf", "m.q8_0.gguf"], [("m.q4_k_m.gguf", "model")]),
    ("quant-underscore-before", {"quant": "Q8_0"}, ["m_Q8_0.gguf"], [("m_Q8_0.gguf", "model")]),
    ("quant-uppercase-extension", {"quant": "Q8_0"}, ["m-Q8_0.GGUF"], [("m-Q8_0.GGUF", "model")]),
    ("quant-folder-of-shards", {"quant": "Q4_K_M"}, ["Q4_K_M/m-00001-of-00002.gguf", "Q4_K_M/m-00002-of-00002.gguf", "Q8_0/m-00001-of-00002.gguf", "Q8_0/m-00002-of-00002.gguf"], [("Q4_K_M/m-00001-of-00002.gguf", "model"), ("Q4_K_M/m-00002-of-00002.gguf", "model")]),
    ("quant-label-must-stand-alone", {"quant": "Q4_K_M"}, ["m-Q4_K_M_L.gguf", "m-IQ4_K_M.gguf", "m-Q4_K_M.gguf", "mQ4_K_M.gguf"], [("m-Q4_K_M.gguf", "model")]),
    ("quant-never-picks-mmproj", {"quant": "Q4_K_M"}, ["mmproj-Q4_K_M.gguf", "m-Q4_K_M.gguf"], [("m-Q4_K_M.gguf", "model")]),
    ("quant-ignores-non-gguf", {"quant": "Q4_K_M"}, ["m-Q4_K_M.gguf", "m-Q4_K_M.md", "Q4_K_M/notes.txt"], [("m-Q4_K_M.gguf", "model")]),
    ("quant-collects-all-shards", {"quant": "Q4_K_M"}, [*reversed(shards("m-Q4_K_M", 3)), *shards("m-Q8_0", 3)], [(path, "model") for path in shards("m-Q4_K_M", 3)]),
    ("quant-with-mmproj", {"quant": "Q8_0", "mmproj": "mmproj-f16.gguf"}, ["m-Q8_0.gguf", "mmproj-f16.gguf", "mmproj-f32.gguf"], [("m-Q8_0.gguf", "model"), ("mmproj-f16.gguf", "mmproj")]),
    ("mmproj-glob-matching-one", {"quant": "Q8_0", "mmproj": "mmproj-*.gguf"}, ["m-Q8_0.gguf", "mmproj-f16.gguf", "other-f16.gguf"], [("m-Q8_0.gguf", "model"), ("mmproj-f16.gguf", "mmproj")]),
    ("file-plain", {"file": "sub/m.gguf"}, ["sub/m.gguf", "m.gguf"], [("sub/m.gguf", "model")]),
    ("file-not-gguf", {"file": "config.json"}, ["config.json", "m.gguf"], [("config.json", "file")]),
    ("file-mmproj", {"file": "mmproj-f16.gguf"}, ["mmproj-f16.gguf"], [("mmproj-f16.gguf", "mmproj")]),
    ("file-shard-pulls-in-all", {"file": "m-00002-of-00003.gguf"}, [*shards("m", 3), "n.gguf"], [(path, "model") for path in shards("m", 3)]),
    ("files-globs-and-roles", {"files": ["*.gguf", "config.json"]}, ["a.gguf", "mmproj-a.gguf", "config.json", "README.md"], [("a.gguf", "model"), ("config.json", "file"), ("mmproj-a.gguf", "mmproj")]),
    ("files-overlapping-globs", {"files": ["a*", "*.gguf"]}, ["a.gguf", "a.txt", "b.gguf"], [("a.gguf", "model"), ("a.txt", "file"), ("b.gguf", "model")]),
    ("files-glob-spans-folders", {"files": ["*.gguf"]}, ["x/y/z.gguf"], [("x/y/z.gguf", "model")]),
    ("files-literal-with-brackets", {"files": ["a.gguf"], "mmproj": "[x].gguf"}, ["a.gguf", "[x].gguf"], [("[x].gguf", "mmproj"), ("a.gguf", "model")]),
    # mmproj: auto and sidecar: as llama.cpp's find_best_sibling picks (common/download.cpp)
    ("mmproj-auto-closest-bits", {"quant": "Q8_0", "mmproj": "auto"}, ["m-Q8_0.gguf", "mmproj-F16.gguf", "mmproj-F32.gguf", "mmproj-Q4_0.gguf"], [("m-Q8_0.gguf", "model"), ("mmproj-Q4_0.gguf", "mmproj")]),
    ("mmproj-auto-deepest-folder", {"quant": "Q8_0", "mmproj": "auto"}, ["v/Q8_0/m-Q8_0.gguf", "mmproj-Q8_0.gguf", "v/mmproj-F16.gguf", "w/mmproj-Q8_0.gguf"], [("v/Q8_0/m-Q8_0.gguf", "model"), ("v/mmproj-F16.gguf", "mmproj")]),
    ("mmproj-auto-first-shard", {"quant": "Q4_K_M", "mmproj": "auto"}, [*shards("m-Q4_K_M", 2), "mmproj-m-F16.gguf"], [*[(path, "model") for path in shards("m-Q4_K_M", 2)], ("mmproj-m-F16.gguf", "mmproj")]),
    ("sidecar-exact-tag-wins", {"quant": "Q4_K_M", "sidecar": "mtp"}, ["m-Q4_K_M.gguf", "mtp-m-Q8_0.gguf", "mtp-m-Q4_K_M.gguf", "mtp-m-Q4_0.gguf"], [("m-Q4_K_M.gguf", "model"), ("mtp-m-Q4_K_M.gguf", "mtp")]),
    ("sidecar-never-the-model", {"quant": "Q8_0", "sidecar": "eagle3"}, ["m-Q8_0.gguf", "eagle3-m-Q8_0.gguf", "dflash-m-Q8_0.gguf"], [("eagle3-m-Q8_0.gguf", "eagle3"), ("m-Q8_0.gguf", "model")]),
    ("sidecar-file-named", {"quant": "Q8_0", "sidecar": "dflash", "sidecar_file": "dflash-a-F16.gguf"}, ["m-Q8_0.gguf", "dflash-a-F16.gguf", "dflash-b-F16.gguf"], [("dflash-a-F16.gguf", "dflash"), ("m-Q8_0.gguf", "model")]),
    ("preset-is-locked", {"quant": "Q8_0"}, ["m-Q8_0.gguf", "preset.ini", "sub/preset.ini"], [("m-Q8_0.gguf", "model"), ("preset.ini", "preset")]),
    ("preset-left-out", {"quant": "Q8_0", "preset": False}, ["m-Q8_0.gguf", "preset.ini"], [("m-Q8_0.gguf", "model")]),
]
# fmt: on


@pytest.mark.parametrize(
    ("fields", "paths", "expected"), [pytest.param(*case[1:], id=case[0]) for case in SELECTED]
)
def test_select_picks_files_with_roles(
    fields: dict[str, object], paths: list[str], expected: list[tuple[str, str]]
) -> None:
    assert picked(fields, paths) == expected


# fmt: off
REFUSED = [
    # id, manifest fields, the repo's files, words of the message (after WHERE), words of the hint
    ("quant-no-match-lists-ggufs", {"quant": "Q4_K_M"}, ["m-Q8_0.gguf", "m-Q4_K_M_L.gguf", "README.md"], ["has no GGUF with quant label Q4_K_M"], ["it has: m-Q4_K_M_L.gguf, m-Q8_0.gguf"]),
    ("quant-no-gguf-at-all", {"quant": "Q4_K_M"}, ["README.md"], ["has no GGUF with quant label Q4_K_M"], ["the repo has no .gguf files"]),
    ("quant-only-mmproj", {"quant": "Q4_K_M"}, ["mmproj-Q4_K_M.gguf"], ["has no GGUF with quant label"], ["no .gguf files"]),
    ("quant-two-models", {"quant": "Q4_K_M"}, ["a-Q4_K_M.gguf", "b/a-Q4_K_M.gguf", "c-Q8_0.gguf"], ["quant Q4_K_M matches 2 different models: a-Q4_K_M.gguf, b/a-Q4_K_M.gguf"], ["file:"]),
    ("quant-single-and-split", {"quant": "Q4_K_M"}, ["m-Q4_K_M.gguf", *shards("m-Q4_K_M", 2)], ["matches 2 different models: m-Q4_K_M-00001-of-00002.gguf, m-Q4_K_M.gguf"], []),
    # llama.cpp only knows shards by their exact names ("-00001-of-00002.gguf", lowercase): ".GGUF"
    # shards are two single files to it, so they are two models here too.
    ("quant-shards-with-uppercase-extension", {"quant": "Q8_0"}, ["m-Q8_0-00001-of-00002.GGUF", "m-Q8_0-00002-of-00002.GGUF"], ["matches 2 different models"], ["file:"]),
    ("quant-two-splits", {"quant": "Q8_0"}, [*shards("m-Q8_0", 2), *shards("m-Q8_0", 3)], ["matches 2 different models"], []),
    ("quant-case-twins", {"quant": "Q8_0"}, ["m-Q8_0.gguf", "M-Q8_0.gguf"], ["matches 2 different models: M-Q8_0.gguf, m-Q8_0.gguf"], []),
    ("shard-missing-middle", {"quant": "Q4_K_M"}, shards("m-Q4_K_M", 3, 1, 3), ["split model m-Q4_K_M is incomplete: shard(s) 2 of 3 missing"], ["every shard"]),
    ("shard-missing-first", {"quant": "Q4_K_M"}, shards("m-Q4_K_M", 4, 2, 3), ["shard(s) 1, 4 of 4 missing"], []),
    ("shard-count-zero", {"quant": "Q4_K_M"}, ["m-Q4_K_M-00001-of-00000.gguf"], ["incomplete", "of 0 missing"], []),
    ("file-missing", {"file": "x.gguf"}, ["a.gguf", "b.json"], ["has no file 'x.gguf'"], ["it has: a.gguf, b.json"]),
    ("file-shard-missing", {"file": "m-00001-of-00002.gguf"}, shards("m", 2, 1), ["shard(s) 2 of 2 missing"], []),
    ("file-is-case-sensitive", {"file": "M.gguf"}, ["m.gguf"], ["has no file 'M.gguf'"], []),
    ("files-each-glob-must-match", {"files": ["*.gguf", "*.bin"]}, ["a.gguf"], ["has no file matching '*.bin'"], ["it has: a.gguf"]),
    ("mmproj-no-match", {"quant": "Q8_0", "mmproj": "mmproj-*.gguf"}, ["m-Q8_0.gguf", "x.gguf"], ["mmproj 'mmproj-*.gguf' matches no file; it must match exactly one"], ["it has: m-Q8_0.gguf, x.gguf"]),
    ("mmproj-several", {"quant": "Q8_0", "mmproj": "mmproj-*.gguf"}, ["m-Q8_0.gguf", "mmproj-f16.gguf", "mmproj-f32.gguf"], ["matches 2 files (mmproj-f16.gguf, mmproj-f32.gguf)"], ["it has: mmproj-f16.gguf, mmproj-f32.gguf"]),
    ("mmproj-auto-none", {"quant": "Q8_0", "mmproj": "auto"}, ["m-Q8_0.gguf", "sub/mmproj-F16.gguf", "MMPROJ-F16.gguf"], ["has no projector", "beside m-Q8_0.gguf"], ["remove 'mmproj'", "'mmproj:'"]),
    ("mmproj-auto-tie", {"quant": "Q4_K_M", "mmproj": "auto"}, ["m-Q4_K_M.gguf", "mmproj-F16.gguf", "mmproj-BF16.gguf", "mmproj-F32.gguf"], ["2 mmproj files fit m-Q4_K_M.gguf equally well: mmproj-BF16.gguf, mmproj-F16.gguf"], ["'mmproj: <path>'"]),
    ("sidecar-none", {"quant": "Q8_0", "sidecar": "mtp"}, ["m-Q8_0.gguf", "eagle3-m-Q8_0.gguf"], ["has no 'mtp-*.gguf' beside m-Q8_0.gguf"], ["remove 'sidecar'", "'sidecar_file:'"]),
    ("sidecar-tie", {"quant": "Q8_0", "sidecar": "mtp"}, ["m-Q8_0.gguf", "mtp-a-Q8_0.gguf", "mtp-b-Q8_0.gguf"], ["2 mtp files fit"], ["'sidecar_file: <path>'"]),
    ("sidecar-file-missing", {"quant": "Q8_0", "sidecar": "mtp", "sidecar_file": "mtp-x.gguf"}, ["m-Q8_0.gguf"], ["has no file 'mtp-x.gguf'"], []),
    ("unsafe-name", {"quant": "Q8_0"}, ["../m-Q8_0.gguf"], ["refusing file name '../m-Q8_0.gguf'", "'..' segment"], []),
    ("unsafe-name-by-glob", {"files": ["*"]}, ["ok.gguf", "/abs.gguf"], ["refusing file name '/abs.gguf'"], []),
    ("case-colliding-files", {"files": ["*.gguf"]}, ["a.gguf", "A.gguf"], ["'A.gguf' and 'a.gguf' differ only in case"], ["narrow 'files:'"]),
    ("long-listing-is-cut", {"quant": "Q2_K"}, [f"f{i:02d}.gguf" for i in range(20)], ["has no GGUF with quant label Q2_K"], ["f11.gguf and 8 more"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("fields", "paths", "words", "hint_words"), [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
)
def test_select_refuses_with_reason(
    fields: dict[str, object], paths: list[str], words: list[str], hint_words: list[str]
) -> None:
    with pytest.raises(ResolveError) as caught:
        picked(fields, paths)
    error = caught.value
    assert error.message.startswith(WHERE), error.message
    for word in words:
        assert word in error.message
    for word in hint_words:
        assert error.hint is not None
        assert word in error.hint
    assert error.exit_code == 1


def test_select_of_shards_whose_case_differs_fails_the_same_way_in_any_listing_order() -> None:
    # Shard names are case-sensitive (llama.cpp opens siblings by exact name): "M-Q8_0" is another,
    # incomplete model, so the quant is ambiguous, whatever order the listing comes in.
    paths = ["m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf", "M-Q8_0-00002-of-00002.gguf"]
    messages = set()
    for order in (paths, paths[::-1], paths[1:] + paths[:1]):
        with pytest.raises(ResolveError) as caught:
            picked({"quant": "Q8_0"}, order)
        messages.add(caught.value.message)
    assert len(messages) == 1
    assert "matches 2 different models" in messages.pop()


# --- plan and resolve ------------------------------------------------------------------------------

A = "a: {repo: org/a, quant: Q4_K_M}"
B = "b: {repo: org/b, file: b.gguf}"
U = f"u: {{url: '{URL}'}}"


def facts(commit: str = C1, salt: str = "") -> Facts:
    """The remote at one moment; a later moment has another commit and other bytes (salt)."""
    snapshots = {
        ("org/a", "main"): snapshot(
            "a-Q4_K_M.gguf", "a-Q8_0.gguf", "README.md", repo="org/a", commit=commit, salt=salt
        ),
        ("org/b", "main"): snapshot("b.gguf", "config.json", repo="org/b", commit=commit, salt=salt),
    }
    hashes = {
        (snap.repo, snap.commit, f.path): sha(f.path + salt)
        for snap in snapshots.values()
        for f in snap.files
        if f.sha256 is None
    }
    return Facts(
        snapshots=snapshots,
        hashes=hashes,
        urls={URL: UrlFile(URL, size=5 + len(salt), sha256=sha("u" + salt))},
    )


BEFORE, AFTER = facts(C1), facts(C2, salt="moved")


def first_lock() -> Lock:
    return resolve(manifest(A, B, U), BEFORE)


def commits(lock: Lock) -> dict[str, str | None]:
    return {name: entry.commit for name, entry in lock.models.items()}


def test_first_lock_pins_commits_sizes_and_hashes() -> None:
    lock = first_lock()
    assert list(lock.models) == ["a", "b", "u"]
    a = lock.models["a"]
    assert (a.source, a.repo, a.revision, a.commit) == ("hf", "org/a", "main", C1)
    assert [(f.path, f.role, f.size, f.sha256) for f in a.files] == [
        ("a-Q4_K_M.gguf", "model", len("a-Q4_K_M.gguf"), sha("a-Q4_K_M.gguf"))
    ]
    assert a.input == ModelInput(repo="org/a", revision="main", quant="Q4_K_M")


def test_unchanged_entry_keeps_its_pin_when_the_branch_moved() -> None:
    previous = first_lock()
    chosen = plan(manifest(A, B, U), previous)
    assert set(chosen.keep) == {"a", "b", "u"}
    assert chosen.resolve == {}
    assert chosen.repos == set()
    assert chosen.urls == {}
    assert resolve(manifest(A, B, U), AFTER, previous) == previous


def test_changed_input_is_resolved_again() -> None:
    previous = first_lock()
    changed = manifest(A.replace("Q4_K_M", "Q8_0"), B, U)
    chosen = plan(changed, previous)
    assert list(chosen.resolve) == ["a"]
    assert chosen.repos == {("org/a", "main")}
    lock = resolve(changed, AFTER, previous)
    assert commits(lock) == {"a": C2, "b": C1, "u": None}
    assert [f.path for f in lock.models["a"].files] == ["a-Q8_0.gguf"]
    assert lock.models["a"].files[0].sha256 == sha("a-Q8_0.gguf" + "moved")
    assert lock.models["b"] == previous.models["b"]


def test_quant_case_alone_is_no_change() -> None:
    previous = first_lock()
    assert plan(manifest(A.replace("Q4_K_M", "q4_k_m"), B, U), previous).resolve == {}


def test_removed_model_is_dropped() -> None:
    previous = first_lock()
    lock = resolve(manifest(A, U), AFTER, previous)
    assert list(lock.models) == ["a", "u"]
    assert lock.models["a"] == previous.models["a"]


def test_added_model_is_resolved_and_others_kept() -> None:
    previous = resolve(manifest(A), BEFORE)
    lock = resolve(manifest(A, B), AFTER, previous)
    assert commits(lock) == {"a": C1, "b": C2}


def test_upgrade_true_resolves_every_model() -> None:
    previous = first_lock()
    assert set(plan(manifest(A, B, U), previous, upgrade=True).resolve) == {"a", "b", "u"}
    lock = resolve(manifest(A, B, U), AFTER, previous, upgrade=True)
    assert commits(lock) == {"a": C2, "b": C2, "u": None}
    assert lock.models["u"].files[0].sha256 == sha("umoved")


def test_upgrade_names_resolve_just_those() -> None:
    previous = first_lock()
    chosen = plan(manifest(A, B, U), previous, upgrade=frozenset({"a"}))
    assert (set(chosen.keep), set(chosen.resolve)) == ({"b", "u"}, {"a"})
    lock = resolve(manifest(A, B, U), AFTER, previous, upgrade=frozenset({"a"}))
    assert commits(lock) == {"a": C2, "b": C1, "u": None}
    assert lock.models["u"] == previous.models["u"]


def test_upgrading_an_unknown_model_is_an_error() -> None:
    with pytest.raises(ResolveError) as caught:
        plan(manifest(A, B, U), first_lock(), upgrade=frozenset({"a", "zz", "yy"}))
    assert caught.value.message == "cannot upgrade yy, zz: no such model in the manifest"
    assert caught.value.hint == "models: a, b, u"


def test_url_source_is_locked_from_url_facts() -> None:
    entry = first_lock().models["u"]
    assert (entry.source, entry.url, entry.repo, entry.commit, entry.revision) == (
        "url",
        URL,
        None,
        None,
        None,
    )
    assert [(f.path, f.role, f.size, f.sha256) for f in entry.files] == [("u.gguf", "model", 5, sha("u"))]


def test_plan_asks_for_each_url_with_its_pinned_sha256() -> None:
    pinned = sha("u")
    chosen = plan(
        manifest(A, f"u: {{url: '{URL}', sha256: {pinned}}}", "v: {url: 'https://y.org/v.gguf'}"), None
    )
    assert chosen.urls == {URL: pinned, "https://y.org/v.gguf": None}
    assert chosen.repos == {("org/a", "main")}


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://x.org/a/b/model.gguf", "model.gguf"),
        ("https://x.org/model.gguf?download=true#frag", "model.gguf"),
        ("https://x.org/my%20model.gguf", "my model.gguf"),
        ("http://127.0.0.1:8000/resolve/main/m.gguf", "m.gguf"),
    ],
    ids=["last-segment", "query-and-fragment", "percent-decoded", "loopback"],
)
def test_url_filename_is_the_last_path_segment(url: str, name: str) -> None:
    assert url_filename(url) == name


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://x.org/dir/", "empty"),
        ("https://x.org", "empty"),
        ("https://x.org/a/..", "'..' segment"),
        ("https://x.org/a%2F..%2Fb", "'..' segment"),
        ("https://x.org/a%2Fb", "it is a folder"),
        ("https://x.org/a%5Cb", "backslash"),
        ("https://x.org/a%00b", "NUL"),
    ],
    ids=[
        "trailing-slash",
        "no-path",
        "dotdot",
        "encoded-traversal",
        "encoded-slash",
        "encoded-backslash",
        "encoded-nul",
    ],
)
def test_url_filename_refuses_names_that_are_no_file(url: str, problem: str) -> None:
    with pytest.raises(ResolveError, match="cannot name a file after") as caught:
        url_filename(url)
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("aux.gguf", "device name"),
        ("models/CON", "device name"),
        ("com1.tar.gz", "device name"),
        ("a:b.gguf", "character Windows does not allow"),
        ("what?.gguf", "character Windows does not allow"),
        ("tab\there.gguf", "character Windows does not allow"),
        ("model.gguf.", "ends with a space or a dot"),
        ("dir /model.gguf", "ends with a space or a dot"),
    ],
)
def test_a_name_windows_cannot_hold_is_refused_on_every_host(name: str, problem: str) -> None:
    found = portable_name_problem(name)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize("name", ["auxiliary.gguf", "console/con-1.gguf", "a.b.c-Q4_K_M.gguf", "日本.gguf"])
def test_names_that_only_look_like_windows_devices_are_allowed(name: str) -> None:
    assert portable_name_problem(name) is None


def test_plain_git_files_take_their_sha256_from_hashes() -> None:
    every = manifest("g: {repo: org/a, files: ['*']}", "b: {repo: org/b, file: b.gguf}")
    chosen = plan(every, None)
    assert unhashed(chosen, BEFORE.snapshots) == {("org/a", C1, "README.md", len("README.md"))}
    entry = resolve(every, BEFORE).models["g"]
    assert {f.path: f.sha256 for f in entry.files} == {
        "README.md": sha("README.md"),
        "a-Q4_K_M.gguf": sha("a-Q4_K_M.gguf"),
        "a-Q8_0.gguf": sha("a-Q8_0.gguf"),
    }


def test_unhashed_skips_kept_entries_and_url_models() -> None:
    every = manifest("g: {repo: org/a, files: ['*']}", "c: {repo: org/b, file: config.json}", U)
    previous = resolve(every, BEFORE)
    assert unhashed(plan(every, None), BEFORE.snapshots) == {
        ("org/a", C1, "README.md", len("README.md")),
        ("org/b", C1, "config.json", len("config.json")),
    }
    assert unhashed(plan(every, previous), AFTER.snapshots) == set()
    assert unhashed(plan(every, previous, upgrade=frozenset({"c"})), AFTER.snapshots) == {
        ("org/b", C2, "config.json", len("config.jsonmoved"))
    }


def test_resolve_reports_the_failing_model() -> None:
    with pytest.raises(ResolveError, match=r"^model 'a': org/a at main \(a1a1a1a1a1a1\) has no GGUF"):
        resolve(manifest(A.replace("Q4_K_M", "Q2_K"), B), BEFORE)


# --- determinism ---------------------------------------------------------------------------------------

POOL = [
    "m-Q4_K_M.gguf", "M-Q4_K_M.gguf", "m.q4_k_m.gguf", "m-Q4_K_M_L.gguf", "m-IQ4_K_M.gguf", "m-Q8_0.gguf",
    "Q4_K_M/m-00001-of-00002.gguf", "Q4_K_M/m-00002-of-00002.gguf", "q4_k_m/M-00002-of-00002.gguf",
    "m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf", "M-Q8_0-00002-of-00002.GGUF",
    "m-Q8_0-00001-of-00003.gguf", "mmproj-f16.gguf", "mmproj-Q8_0.gguf", "README.md", "config.json",
    "sub/m-Q8_0.gguf", "a.gguf", "A.gguf", "b.GGUF",
]  # fmt: skip
# A listing every entry below resolves against; random extras from POOL then make some fail.
COMPLETE = [
    "README.md", "config.json", "a.gguf", "mmproj-f16.gguf", "m-Q8_0-00001-of-00002.gguf",
    "m-Q8_0-00002-of-00002.gguf", "Q4_K_M/m-00001-of-00002.gguf", "Q4_K_M/m-00002-of-00002.gguf",
]  # fmt: skip
LISTINGS = st.builds(
    lambda base, extra: list(dict.fromkeys(base + extra)),
    st.sampled_from([[], COMPLETE]),
    st.lists(st.sampled_from(POOL), max_size=8, unique=True),
).filter(bool)
ENTRIES = {
    "q4": "{repo: org/r, quant: Q4_K_M}",
    "q4-lower": "{repo: org/r, quant: q4_k_m, revision: main}",
    "q8-vision": "{repo: org/r, quant: Q8_0, mmproj: 'mmproj-*.gguf'}",
    "ggufs": "{repo: org/r, files: ['*.gguf']}",
    "text": "{repo: org/r, files: ['*.json', README.md]}",
    "shard": "{repo: org/r, file: m-Q8_0-00002-of-00002.gguf}",
    "one": "{repo: org/r, file: a.gguf}",
    "url": f"{{url: '{URL}'}}",
}


def outcome(names: list[str], paths: list[str]) -> tuple[str, ...]:
    """The lock's bytes, or the error; also checks that ``unhashed`` named exactly the plain git files."""
    snap = snapshot(*paths, repo="org/r")
    remote = Facts(
        snapshots={("org/r", "main"): snap},
        hashes={("org/r", C1, f.path): sha(f.path) for f in snap.files if f.sha256 is None},
        urls={URL: UrlFile(URL, size=5, sha256=sha("u"))},
    )
    wanted_models = manifest(*(f"{name}: {ENTRIES[name]}" for name in names))
    try:
        lock = resolve(wanted_models, remote)
        needed = unhashed(plan(wanted_models, None), remote.snapshots)
    except ResolveError as error:
        return ("error", error.message, str(error.hint))
    plain = {f.path for f in snap.files if f.sha256 is None}
    locked = {f.path for entry in lock.models.values() if entry.source == "hf" for f in entry.files}
    assert needed == {("org/r", C1, f.path, f.size) for f in snap.files if f.path in plain & locked}
    return ("ok", dumps(lock))


@settings(max_examples=100, deadline=None)
@given(
    names=st.lists(st.sampled_from(sorted(ENTRIES)), min_size=1, max_size=4, unique=True),
    paths=LISTINGS,
    data=st.data(),
)
def test_resolution_is_independent_of_listing_and_manifest_order(
    names: list[str], paths: list[str], data: st.DataObject
) -> None:
    first = outcome(names, paths)
    assert outcome(names, data.draw(st.permutations(paths))) == first
    assert outcome(names, paths) == first
    other_order = outcome(data.draw(st.permutations(names)), paths)
    if first[0] == "ok":
        assert other_order == first
    else:
        # With several failing models the first one in the file is reported; failing stays failing.
        assert other_order[0] == "error"


# --- LoRA adapters ---------------------------------------------------------------------------------------


def test_lora_globs_pick_adapters_with_role_lora() -> None:
    paths = ["m-Q4_K_M.gguf", "lora/style.gguf", "lora/tone.gguf", "README.md"]

    assert picked({"quant": "Q4_K_M", "lora": ["lora/*.gguf"]}, paths) == [
        ("lora/style.gguf", "lora"),
        ("lora/tone.gguf", "lora"),
        ("m-Q4_K_M.gguf", "model"),
    ]


def test_a_lora_pattern_that_matches_nothing_is_an_error_listing_the_repo() -> None:
    with pytest.raises(ResolveError, match="has no LoRA adapter matching 'adapters/\\*'") as caught:
        picked({"quant": "Q4_K_M", "lora": ["adapters/*"]}, ["m-Q4_K_M.gguf"])
    assert caught.value.hint == "it has: m-Q4_K_M.gguf"


def test_lora_is_part_of_the_lock_input_sorted_and_deduplicated() -> None:
    parsed = manifest("a: {repo: org/a, quant: Q4_K_M, lora: [b.gguf, a.gguf, b.gguf]}")

    assert parsed.inputs()["a"].lora == ["a.gguf", "b.gguf"]
