"""The kept parses of ``models.yaml`` and ``models.lock`` (``alex_models._doccache``): a read of
the same bytes uses one, any other bytes are parsed anew, and an entry that is damaged, from
another alex-models or no longer valid is passed over and written again. That a read through the
CLI then loads no YAML parser is tests/test_startup.py's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import write_manifest

from alex_models import __version__, _doccache
from alex_models.api import read_lock
from alex_models.lock import Lock, LockedFile, LockedModel, dumps
from alex_models.manifest import ManifestError, ModelInput, load_manifest
from alex_models.settings import cache_home

SHA = "ab" * 32


def entry(data: bytes) -> Path:
    return cache_home() / "documents" / f"{hashlib.sha256(data).hexdigest()}.json"


def write_lock(folder: Path, sha256: str = SHA) -> Path:
    model = LockedModel(
        input=ModelInput(url="https://example.org/tiny.gguf"),
        source="url",
        url="https://example.org/tiny.gguf",
        files=[LockedFile(path="tiny.gguf", role="model", size=5, sha256=sha256)],
    )
    path = folder / "models.lock"
    path.write_text(dumps(Lock(version=1, models={"tiny": model})), encoding="utf-8")
    return path


def test_a_one_byte_edit_of_either_file_is_read_anew(project: Path) -> None:
    manifest = write_manifest(project, {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q4_K_M"}})
    lock = write_lock(project)
    assert load_manifest(manifest).models["tiny"].quant == "Q4_K_M"
    assert read_lock(lock) is not None
    assert entry(manifest.read_bytes()).is_file()
    assert entry(lock.read_bytes()).is_file()

    manifest.write_bytes(manifest.read_bytes().replace(b"Q4_K_M", b"Q5_K_M"))
    lock.write_bytes(lock.read_bytes().replace(SHA.encode(), ("cd" * 32).encode()))

    assert load_manifest(manifest).models["tiny"].quant == "Q5_K_M"
    again = read_lock(lock)
    assert again is not None
    assert again.models["tiny"].files[0].sha256 == "cd" * 32

    # An edit that breaks the file is an error naming line and column, whatever was kept before.
    manifest.write_bytes(manifest.read_bytes().replace(b'"quant"', b'"qaunt"'))
    with pytest.raises(ManifestError, match=r"models\.yaml:\d+:\d+: unknown key 'qaunt'"):
        load_manifest(manifest)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda kept: kept[: len(kept) // 2], id="cut short"),
        pytest.param(lambda kept: b"\x00" * len(kept), id="zeros"),
        pytest.param(lambda kept: kept.replace(b"Q4_K_M", b"Q8_0"), id="edited, hash not"),
    ],
)
def test_a_damaged_entry_is_passed_over_and_written_again(project: Path, damage: object) -> None:
    manifest = write_manifest(project, {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q4_K_M"}})
    load_manifest(manifest)
    kept = entry(manifest.read_bytes())
    whole = kept.read_bytes()
    assert callable(damage)
    kept.write_bytes(damage(whole))

    assert load_manifest(manifest).models["tiny"].quant == "Q4_K_M"
    assert kept.read_bytes() == whole


def test_an_entry_that_no_longer_validates_or_is_another_versions_is_parsed_anew(project: Path) -> None:
    """Whole entries, hash and all, as another alex-models (or one that checked less) wrote them."""
    manifest = write_manifest(project, {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q4_K_M"}})
    data = manifest.read_bytes()
    invalid = {"version": 1, "models": {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q4_K_M", "extra": 1}}}
    other = {"version": 1, "models": {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q8_0"}}}
    for version, document in ((__version__, invalid), ("0.0.1", other)):
        body = json.dumps(
            {
                "format": 1,
                "version": version,
                "sha256": hashlib.sha256(data).hexdigest(),
                "document": document,
            }
        ).encode()
        entry(data).parent.mkdir(parents=True, exist_ok=True)
        entry(data).write_bytes(_doccache.seal(body, _doccache._secret() or b"").encode() + b"\n" + body)

        assert load_manifest(manifest).models["tiny"].quant == "Q4_K_M"


def test_a_cache_folder_that_cannot_be_written_costs_only_the_parse(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = project.parent / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    manifest = write_manifest(project, {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q4_K_M"}})

    assert load_manifest(manifest).models["tiny"].quant == "Q4_K_M"
    assert load_manifest(manifest).models["tiny"].quant == "Q4_K_M"


def test_only_the_newest_entries_are_kept() -> None:
    for number in range(_doccache._KEPT + 3):
        _doccache.keep(f"n: {number}\n".encode(), {"n": number})

    folder = cache_home() / "documents"
    assert len(list(folder.iterdir())) == _doccache._KEPT
    assert _doccache.recall(f"n: {_doccache._KEPT + 2}\n".encode()) == {"n": _doccache._KEPT + 2}


def test_what_json_would_give_back_otherwise_is_not_kept() -> None:
    _doccache.keep(b"{1: a}\n", {1: "a"})  # JSON keys are strings: it would come back as {"1": "a"}

    assert _doccache.recall(b"{1: a}\n") is None


def test_an_entry_sealed_elsewhere_is_not_read(project: Path) -> None:
    """A cache folder restored from another machine or boot (a CI cache) maps the committed bytes to
    a document nobody committed: its seal is another boot's, so the file is parsed instead."""
    manifest = write_manifest(project, {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q4_K_M"}})
    data = manifest.read_bytes()
    forged = {"version": 1, "models": {"tiny": {"repo": "evil/other-GGUF", "quant": "Q4_K_M"}}}
    body = json.dumps(
        {"format": 1, "version": __version__, "sha256": hashlib.sha256(data).hexdigest(), "document": forged}
    ).encode()
    entry(data).parent.mkdir(parents=True, exist_ok=True)
    entry(data).write_bytes(_doccache.seal(body, b"another boot").encode() + b"\n" + body)

    assert load_manifest(manifest).models["tiny"].repo == "org/tiny-GGUF"
