"""What changed between two locks of a model: the commit it moved to, and each file that appeared,
disappeared or got other bytes. Pure; ``lock --dry-run`` and ``outdated`` report with it, so both
say a change the same way::

    ~ qwen: Qwen/Qwen2.5-0.5B-Instruct-GGUF@main 9217f5db79a2 -> 1a2b3c4d5e6f
        ~ qwen2.5-0.5b-instruct-q4_k_m.gguf: 491 MB -> 492 MB
        + mmproj-f16.gguf: 812 MB
        - old-notes.txt: 2.1 KB

Sizes are said with ``human_size``; the JSON forms keep bytes and the full SHA256.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alex_models._units import human_size
from alex_models.lock import Lock, LockedFile, LockedModel

ChangeKind = Literal["added", "removed", "changed"]
_MARK: dict[ChangeKind, str] = {"added": "+", "removed": "-", "changed": "~"}


def _kind(before: object, after: object) -> ChangeKind:
    return "added" if before is None else "removed" if after is None else "changed"


@dataclass(frozen=True)
class FileChange:
    """One file path whose locked bytes differ: absent before, absent after, or other bytes."""

    path: str
    before: LockedFile | None
    after: LockedFile | None

    @property
    def kind(self) -> ChangeKind:
        return _kind(self.before, self.after)

    def describe(self) -> str:
        """One line: ``+ path: 812 MB``, ``- path: 2.1 KB``, ``~ path: 491 MB -> 492 MB``."""
        head = f"{_MARK[self.kind]} {self.path}"
        if self.before is None or self.after is None:
            present = self.after or self.before
            return f"{head}: {human_size(present.size)}" if present is not None else head
        said = []
        if self.before.size != self.after.size:
            said.append(_sizes(self.before.size, self.after.size))
        elif self.before.sha256 != self.after.sha256:
            said.append(f"new SHA256, same size ({human_size(self.after.size)})")
        if self.before.role != self.after.role:
            said.append(f"role {self.before.role} -> {self.after.role}")
        return f"{head}: {', '.join(said)}"

    def as_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "change": self.kind,
            "before": _file_json(self.before),
            "after": _file_json(self.after),
        }


@dataclass(frozen=True)
class ModelChange:
    """One model whose lock entry differs: added, removed, or pinned elsewhere / to other files."""

    name: str
    before: LockedModel | None
    after: LockedModel | None
    files: tuple[FileChange, ...]
    """The files that differ, by path; empty when only the commit moved."""

    @property
    def kind(self) -> ChangeKind:
        return _kind(self.before, self.after)

    def describe(self) -> list[str]:
        """A header line (what the model is pinned to, before -> after), then one indented line per file."""
        lines = [f"{_MARK[self.kind]} {self.name}: {self._pins()}"]
        lines.extend(f"    {change.describe()}" for change in self.files)
        if self.kind == "changed" and not self.files:
            lines.append("    (the same files, byte for byte)")
        return lines

    def _pins(self) -> str:
        if self.before is None or self.after is None:
            entry = self.after or self.before
            return "" if entry is None else f"{pin(entry)}, {_count(entry.files)}"
        before, after = self.before, self.after
        moving = _moving(before)
        if moving is not None and moving == _moving(after):
            commits = _short(after.pin)
            if before.pin != after.pin:
                commits = f"{_short(before.pin)} -> {commits}"
            return f"{moving} {commits}"
        return f"{pin(before)} -> {pin(after)}"

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "change": self.kind,
            "before": _pin_json(self.before),
            "after": _pin_json(self.after),
            "files": [change.as_json() for change in self.files],
        }


def model_change(name: str, before: LockedModel | None, after: LockedModel | None) -> ModelChange | None:
    """How model ``name`` changes from ``before`` to ``after`` (None: absent); None if it does not."""
    if before == after:
        return None
    old = {} if before is None else {f.path: f for f in before.files}
    new = {} if after is None else {f.path: f for f in after.files}
    files = tuple(
        FileChange(path, old.get(path), new.get(path))
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    )
    return ModelChange(name, before, after, files)


def lock_changes(before: Lock | None, after: Lock) -> list[ModelChange]:
    """Every model whose entry differs between the two locks, by name."""
    old = {} if before is None else before.models
    changes = (
        model_change(name, old.get(name), after.models.get(name))
        for name in sorted(old.keys() | after.models.keys())
    )
    return [change for change in changes if change is not None]


def pin(entry: LockedModel) -> str:
    """What an entry is pinned to, for people: ``org/repo@main 9217f5db79a2``,
    ``ghcr.io/team/models:qwen sha256:5d1e0c7a9f3b``, or its URL."""
    moving = _moving(entry)
    if moving is not None:
        return f"{moving} {_short(entry.pin)}"
    return entry.url or entry.source


def _moving(entry: LockedModel) -> str | None:
    """What can move under an entry's pin: ``org/repo@revision``, or ``REGISTRY/REPOSITORY:TAG``
    (``@sha256:…`` when the input pins a digest)."""
    if entry.source == "oci":
        return entry.input.oci
    return None if entry.repo is None else f"{entry.repo}@{entry.revision}"


def _short(pinned: str | None) -> str:
    """A commit's first 12 hex digits; a digest's ``sha256:`` and its first 12."""
    if pinned is not None and pinned.startswith("sha256:"):
        return pinned[: len("sha256:") + 12]
    return (pinned or "?")[:12]


def _count(files: list[LockedFile]) -> str:
    total = human_size(sum(f.size for f in files))
    return f"{len(files)} file{'' if len(files) == 1 else 's'}, {total}"


def _sizes(before: int, after: int) -> str:
    said = human_size(before), human_size(after)
    if said[0] == said[1]:  # 491.2 MB -> 491.3 MB would read as no change: say the bytes
        said = f"{before} B", f"{after} B"
    return f"{said[0]} -> {said[1]}"


def _file_json(entry: LockedFile | None) -> dict[str, object] | None:
    return None if entry is None else {"role": entry.role, "size": entry.size, "sha256": entry.sha256}


def _pin_json(entry: LockedModel | None) -> dict[str, object] | None:
    if entry is None:
        return None
    return {
        "source": entry.source,
        "repo": entry.repo,
        "revision": entry.revision,
        "commit": entry.commit,
        "url": entry.url,
        "oci": entry.input.oci,
        "digest": entry.digest,
    }
