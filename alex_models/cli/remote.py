"""Commands on a remote: ``push``, and what ``status --remote`` prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alex_models._units import human_size
from alex_models.cli.options import JsonOpt, ManifestOpt, QuietOpt, complete_model_name
from alex_models.cli.render import print_json, say

if TYPE_CHECKING:
    from alex_models.api import RemoteBlob, RemoteStatusResult


def push(
    remote: Annotated[
        str | None,
        typer.Argument(
            help="A URL (file:///srv/models, s3://bucket/prefix, oci://registry/repository) or a name "
            "from models.yaml's remotes: (default: the first)."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Push just this model (repeatable).", autocompletion=complete_model_name),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Files uploaded at once.")] = 4,
    tag: Annotated[
        str | None,
        typer.Option(
            "--tag",
            help="A registry's tag for each model, from {name}, {quant}, {revision} and {commit} "
            "(e.g. '{name}-{quant}'; default '{name}').",
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Upload the locked blobs the remote lacks (from the store: sync first), then the lock under locks/.

    A registry (oci://REGISTRY/REPOSITORY) also gets each model as a ModelPack artifact tagged with
    its name (or --tag), and the lock as the tag locks-<sha256>.lock.
    """
    from alex_models import api
    from alex_models.cli.progress import progress_for

    with progress_for(quiet or json_output, verbs=("uploading", "sent")) as progress:
        result = api.push(manifest, remote, only=tuple(only or ()), jobs=jobs, tag=tag, progress=progress)
    if json_output:
        print_json(
            "push",
            {
                "remote": result.remote,
                "uploaded": [blob_json(blob) for blob in result.uploaded],
                "skipped": [blob_json(blob) for blob in result.skipped],
                "bytes": result.bytes_uploaded,
                "mounted": [blob_json(blob) for blob in result.mounted],
                "bytes_mounted": result.bytes_mounted,
                "lock": result.lock_key,
                "artifacts": list(result.artifacts),
                "seconds": round(result.seconds, 3),
            },
        )
        return
    if quiet:
        return
    for blob in result.uploaded:
        say(f"uploaded: {blob.label} ({human_size(blob.size)})")
    for blob in result.mounted:
        say(f"mounted: {blob.label} ({human_size(blob.size)}, from another repository of the registry)")
    for blob in result.skipped:
        say(f"skipped: {blob.label} ({human_size(blob.size)}, already there)")
    for artifact in result.artifacts:
        say(f"published: {artifact}")
    skipped = sum(blob.size for blob in result.skipped)
    say(
        f"Pushed to {result.remote}: {len(result.uploaded)} uploaded ({human_size(result.bytes_uploaded)}), "
        + (f"{len(result.mounted)} mounted ({human_size(result.bytes_mounted)}), " if result.mounted else "")
        + f"{len(result.skipped)} already there ({human_size(skipped)}); lock at {result.lock_key}, "
        f"in {result.seconds:.1f}s."
    )


def show_remote_status(result: RemoteStatusResult, json_output: bool) -> None:
    """``status --remote``: per model, the locked blobs the remote holds and those it lacks."""
    if json_output:
        print_json(
            "status",
            {
                "remote": result.remote,
                "lock": str(result.lock_path),
                "complete": result.complete,
                "models": {
                    m.name: {
                        "complete": m.complete,
                        "present": [blob_json(blob) for blob in m.present],
                        "missing": [blob_json(blob) for blob in m.missing],
                    }
                    for m in result.models
                },
            },
        )
        return
    say(f"remote: {result.remote}")
    for model in result.models:
        held = sum(blob.size for blob in model.present)
        total = held + sum(blob.size for blob in model.missing)
        files = len(model.present) + len(model.missing)
        state = "complete" if model.complete else "missing"
        sizes = f"{human_size(held)}/{human_size(total)}"
        say(f"{model.name:30} {state:8} {len(model.present)}/{files} files  {sizes}")
        for blob in model.missing:
            say(f"  missing: {blob.label} ({human_size(blob.size)})")


def blob_json(blob: RemoteBlob) -> dict[str, object]:
    """A blob as ``--json`` lists it (push, status --remote, bundle)."""
    return {"file": blob.label, "sha256": blob.sha256, "bytes": blob.size, "models": list(blob.models)}
