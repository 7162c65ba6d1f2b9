"""Commands on the store: ``sync``, ``status``, ``verify``, ``path``, ``gc``, ``pull``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alex_models._units import human_size
from alex_models.cli.options import JsonOpt, ManifestOpt, QuietOpt, complete_model_name
from alex_models.cli.render import labelled, print_json, say, warn

if TYPE_CHECKING:
    from alex_models.api import StatusResult


def sync(
    locked: Annotated[
        bool, typer.Option("--locked", help="Fail (exit 1) if the lock is out of date.")
    ] = False,
    frozen: Annotated[bool, typer.Option("--frozen", help="Use the lock as it is; never resolve.")] = False,
    offline: Annotated[bool, typer.Option("--offline", help="Never touch the network.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Sync just this model (repeatable).", autocompletion=complete_model_name),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Files downloaded at once.")] = 4,
    hf_cache: Annotated[
        Path | None,
        typer.Option(
            "--hf-cache",
            envvar="ALEX_MODELS_HF_CACHE",
            help="Also lay the files out as a Hugging Face cache here (e.g. ~/.cache/huggingface/hub).",
        ),
    ] = None,
    remotes: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            help="Fetch from this remote first: a URL or a name from models.yaml's remotes: "
            "(repeatable, in order).",
        ),
    ] = None,
    no_hub: Annotated[
        bool,
        typer.Option("--no-hub", help="Fetch only from the --from remotes, never from the Hub or a URL."),
    ] = False,
    manifest: ManifestOpt = Path("models.yaml"),
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Download what the lock pins into the store, verified, and build the views llama.cpp reads."""
    from alex_models import api
    from alex_models.cli.progress import progress_for

    with progress_for(quiet or json_output) as progress:
        options = api.SyncOptions(
            locked=locked,
            frozen=frozen,
            offline=offline,
            only=tuple(only or ()),
            jobs=jobs,
            hf_cache=hf_cache,
            remotes=tuple(remotes or ()),
            hub=not no_hub,
        )
        result = api.sync(manifest, options, progress=progress)
    if json_output:
        print_json(
            "sync",
            {
                "lock": str(result.lock_path),
                "store": str(result.store),
                "resolved": list(result.resolved),
                "downloaded": list(result.downloaded),
                "reused": list(result.reused),
                "bytes": result.bytes_received,
                "emitted": [str(path) for path in result.emitted],
                "warnings": list(result.warnings),
                "seconds": round(result.seconds, 3),
                "models": {
                    m.name: {"main": str(m.main) if m.main else None, "views": [str(v) for v in m.views]}
                    for m in result.models
                },
            },
        )
        return
    for line in result.warnings:
        labelled("warning", line)
    if not quiet:
        for path in result.emitted:
            say(f"wrote: {path}")
        fetched = f"{len(result.downloaded)} downloaded ({human_size(result.bytes_received)})"
        reused = f"{len(result.reused)} already there"
        took = f"{result.seconds:.1f}s"
        say(f"Synced {len(result.models)} model(s) into {result.store}: {fetched}, {reused}, in {took}.")


def status(
    fix: Annotated[
        bool,
        typer.Option("--fix", help="Link the missing views of blobs the store holds; write nothing else."),
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote", help="Instead, which locked blobs this remote holds (a URL or a name from remotes:)."
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """What is locked, and whether each model is synced, partial or missing in the store. No network.

    Exits 1 when a locked model is not synced (like 'git diff --exit-code'), after printing it all;
    with --remote, when the remote lacks a locked blob.
    """
    from alex_models import api

    if remote is not None:
        from alex_models.cli.remote import show_remote_status

        held = api.remote_status(manifest, remote)
        show_remote_status(held, json_output)
        if not held.complete:
            raise typer.Exit(1)
        return
    result = api.status(manifest, fix=fix)
    if json_output:
        print_json(
            "status",
            {
                "lock": str(result.lock_path),
                "store": str(result.store),
                "store_origin": result.store_origin,
                "store_overridden": str(result.store_overridden) if result.store_overridden else None,
                "stale": list(result.stale),
                "synced": result.synced,
                "linked": [str(view) for view in result.linked],
                "models": {
                    m.name: {
                        "state": m.state,
                        "synced": m.synced,
                        "sync_state": m.sync_state,
                        "views_missing": m.views_missing,
                        "files": m.files,
                        "present_files": m.present_files,
                        "size": m.size,
                        "present_bytes": m.present_bytes,
                        "main": str(m.main) if m.main else None,
                    }
                    for m in result.models
                },
            },
        )
    else:
        _say_status(result)
    if not result.synced:
        for hint in dict.fromkeys(m.hint for m in result.models if m.hint):
            labelled("hint", hint)
        raise typer.Exit(1)


def _say_status(result: StatusResult) -> None:
    where = f"store: {result.store}"
    if result.store_overridden is not None:
        where += f" (from ALEX_MODELS_HOME; the manifest's store: {result.store_overridden} is set aside)"
    say(where)
    for view in result.linked:
        say(f"linked: {view}")
    for model in result.models:
        line = (
            f"{model.name:30} {model.sync_state:8} {model.present_files}/{model.files} files  "
            f"{human_size(model.present_bytes)}/{human_size(model.size)}"
        )
        say(f"{line}  views missing" if model.views_missing else line)
    for change in result.stale:
        warn(f"stale: {change}")


def verify(manifest: ManifestOpt = Path("models.yaml"), json_output: JsonOpt = False) -> None:
    """Re-hash every locked blob in the store; exit 3 naming any file that no longer matches."""
    from alex_models import api

    result = api.verify(manifest)
    if json_output:
        print_json(
            "verify",
            {"checked": result.checked, "corrupt": list(result.corrupt), "missing": list(result.missing)},
        )
    else:
        for label in result.corrupt:
            warn(f"corrupt: {label} (removed from the store; 'alex-models sync' fetches it again)")
        for label in result.missing:
            warn(f"missing: {label}")
        if not result.corrupt and not result.missing:
            say(f"All {result.checked} blob(s) match the lock.")
    if result.corrupt:
        raise typer.Exit(3)
    if result.missing:
        labelled("hint", "run 'alex-models sync'")
        raise typer.Exit(1)


def path(
    name: Annotated[
        str, typer.Argument(help="A model name from models.yaml.", autocompletion=complete_model_name)
    ],
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Print the absolute path of a model's main file (the first shard of a split model)."""
    from alex_models import api

    found = api.model_path(name, manifest)
    if json_output:
        print_json("path", {"name": name, "path": str(found)})
        return
    say(str(found))


def gc(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="List each file that would be removed, with its size; remove nothing."
        ),
    ] = False,
    forget_pulls: Annotated[
        bool,
        typer.Option(
            "--forget-pulls",
            help="Also let go of every file 'pull' fetched (its lock in <store>/pulls/; "
            "deleting one such lock lets go of that file alone).",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Remove blobs, views and partial downloads that no synced lock (or pull) still references."""
    from alex_models import api
    from alex_models._units import human_size

    result = api.gc(dry_run=dry_run, forget_pulls=forget_pulls)
    if json_output:
        print_json(
            "gc",
            {
                "blobs": result.removed_blobs,
                "partials": result.removed_partials,
                "views": result.removed_views,
                "bytes_freed": result.bytes_freed,
                "locks": list(result.kept_locks),
                "forgotten_pulls": [str(path) for path in result.forgotten_pulls],
                "removed": {
                    kind: [{"path": str(item.path), "bytes": item.size} for item in items]
                    for kind, items in (
                        ("blobs", result.blobs),
                        ("partials", result.partials),
                        ("views", result.views),
                    )
                },
                "dry_run": result.dry_run,
            },
        )
        return
    if dry_run:
        for path in result.forgotten_pulls:
            say(f"would forget pull {path}")
        for kind, items in (("blob", result.blobs), ("partial", result.partials), ("view", result.views)):
            for item in items:
                say(f"would remove {kind} {item.path} ({human_size(item.size)})")
    verb = "Would free" if dry_run else "Freed"
    removed = f"{result.removed_blobs} blob(s), {result.removed_partials} partial(s)"
    removed += f", {result.removed_views} view(s)"
    say(f"{verb} {human_size(result.bytes_freed)}: {removed}. Locks still in use: {len(result.kept_locks)}.")


def pull(
    repo: Annotated[str, typer.Argument(help="Hugging Face repo id.")],
    file: Annotated[str, typer.Argument(help="Path of the file in the repo.")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit.")] = "main",
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Also place the file(s) in this folder.")
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA256 of the file.")] = None,
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Download one file without a manifest, verified, through the store; print its path.

    The store keeps it from gc until 'gc --forget-pulls' (or deleting its lock in <store>/pulls/).
    """
    from alex_models import api
    from alex_models.cli.progress import progress_for

    with progress_for(quiet or json_output) as progress:
        found = api.pull(repo, file, revision=revision, directory=directory, sha256=sha256, progress=progress)
    if json_output:
        print_json("pull", {"repo": repo, "file": file, "revision": revision, "path": str(found)})
        return
    say(str(found))
