"""``lockdiff``: what changed between two locks of a model, as ``lock --dry-run`` and ``outdated`` say it."""

from __future__ import annotations

from alex_models.lock import Lock, LockedFile, LockedModel
from alex_models.lockdiff import lock_changes, model_change
from alex_models.manifest import ModelInput

OLD = "9217f5db79a29953eb74d5343926648285ec7e67"
NEW = "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d"
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
URL = "https://example.org/files/draft.gguf"


def file(path: str, size: int, sha256: str = SHA_A, role: str = "model") -> LockedFile:
    return LockedFile.model_validate({"path": path, "role": role, "size": size, "sha256": sha256})


def hf(commit: str, *files: LockedFile, revision: str = "main", quant: str = "Q4_K_M") -> LockedModel:
    wanted = ModelInput(repo="org/plain", revision=revision, quant=quant)
    return LockedModel(
        input=wanted, source="hf", repo="org/plain", revision=revision, commit=commit, files=list(files)
    )


def url_model() -> LockedModel:
    return LockedModel(input=ModelInput(url=URL), source="url", url=URL, files=[file("draft.gguf", 7, SHA_C)])


def test_equal_entries_are_no_change() -> None:
    entry = hf(OLD, file("m.gguf", 10))

    assert model_change("plain", entry, entry.model_copy()) is None


def test_a_moved_commit_lists_files_changed_added_and_removed_with_human_sizes() -> None:
    before = hf(OLD, file("m-Q4_K_M.gguf", 491_400_032, SHA_A), file("notes.txt", 2_100, SHA_C, "file"))
    after = hf(
        NEW, file("m-Q4_K_M.gguf", 492_000_000, SHA_B), file("mmproj.gguf", 812_000_000, SHA_C, "mmproj")
    )

    change = model_change("plain", before, after)

    assert change is not None
    assert change.kind == "changed"
    assert [(f.path, f.kind) for f in change.files] == [
        ("m-Q4_K_M.gguf", "changed"),
        ("mmproj.gguf", "added"),
        ("notes.txt", "removed"),
    ]
    assert change.describe() == [
        "~ plain: org/plain@main 9217f5db79a2 -> 1a2b3c4d5e6f",
        "    ~ m-Q4_K_M.gguf: 491 MB -> 492 MB",
        "    + mmproj.gguf: 812 MB",
        "    - notes.txt: 2.1 KB",
    ]


def test_same_size_with_new_bytes_says_new_sha256() -> None:
    change = model_change(
        "plain", hf(OLD, file("m.gguf", 1_500, SHA_A)), hf(NEW, file("m.gguf", 1_500, SHA_B))
    )

    assert change is not None
    assert change.describe()[1] == "    ~ m.gguf: new SHA256, same size (1.5 KB)"


def test_sizes_that_read_the_same_to_people_are_said_in_bytes() -> None:
    change = model_change("plain", hf(OLD, file("m.gguf", 491_400_032)), hf(NEW, file("m.gguf", 491_400_033)))

    assert change is not None
    assert change.describe()[1] == "    ~ m.gguf: 491400032 B -> 491400033 B"


def test_a_moved_commit_with_the_same_files_says_so() -> None:
    change = model_change("plain", hf(OLD, file("m.gguf", 10)), hf(NEW, file("m.gguf", 10)))

    assert change is not None
    assert change.files == ()
    assert change.describe() == [
        "~ plain: org/plain@main 9217f5db79a2 -> 1a2b3c4d5e6f",
        "    (the same files, byte for byte)",
    ]


def test_an_entry_that_changes_source_shows_both_pins() -> None:
    change = model_change("draft", hf(OLD, file("draft.gguf", 7, SHA_C)), url_model())

    assert change is not None
    assert change.describe() == [
        f"~ draft: org/plain@main 9217f5db79a2 -> {URL}",
        "    (the same files, byte for byte)",
    ]


def test_lock_changes_lists_added_removed_and_changed_models_by_name() -> None:
    kept = url_model()
    before = Lock(
        version=1,
        models={"kept": kept, "gone": hf(OLD, file("g.gguf", 5)), "moved": hf(OLD, file("m.gguf", 1))},
    )
    after = Lock(
        version=1,
        models={"kept": kept, "moved": hf(NEW, file("m.gguf", 2)), "new": hf(NEW, file("n.gguf", 3_000))},
    )

    changes = lock_changes(before, after)

    assert [(c.name, c.kind) for c in changes] == [
        ("gone", "removed"),
        ("moved", "changed"),
        ("new", "added"),
    ]
    assert changes[0].describe() == ["- gone: org/plain@main 9217f5db79a2, 1 file, 5 B", "    - g.gguf: 5 B"]
    assert changes[2].describe()[0] == "+ new: org/plain@main 1a2b3c4d5e6f, 1 file, 3 KB"
    assert [c.name for c in lock_changes(None, after)] == ["kept", "moved", "new"]


def test_json_keeps_bytes_and_full_hashes() -> None:
    change = model_change(
        "plain", hf(OLD, file("m.gguf", 1_500, SHA_A)), hf(NEW, file("m.gguf", 1_600, SHA_B))
    )

    assert change is not None
    assert change.as_json() == {
        "name": "plain",
        "change": "changed",
        "before": {
            "source": "hf",
            "repo": "org/plain",
            "revision": "main",
            "commit": OLD,
            "url": None,
            "oci": None,
            "digest": None,
        },
        "after": {
            "source": "hf",
            "repo": "org/plain",
            "revision": "main",
            "commit": NEW,
            "url": None,
            "oci": None,
            "digest": None,
        },
        "files": [
            {
                "path": "m.gguf",
                "change": "changed",
                "before": {"role": "model", "size": 1_500, "sha256": SHA_A},
                "after": {"role": "model", "size": 1_600, "sha256": SHA_B},
            }
        ],
    }
