"""``alex-models bundle``: the lock, the manifest and the blobs in one tar, for air-gapped sites."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alex_models._units import human_size
from alex_models.cli.options import JsonOpt, ManifestOpt, QuietOpt, complete_model_name
from alex_models.cli.remote import blob_json
from alex_models.cli.render import print_json, say

bundle_app = typer.Typer(
    help="The lock, the manifest and the blobs in one tar, for sites with no network.", no_args_is_help=True
)


@bundle_app.command("create")
def create(
    out: Annotated[Path, typer.Argument(help="The tar to write (replaced if it exists).")],
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", help="Bundle just this model (repeatable).", autocompletion=complete_model_name
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Write the lock, models.yaml and the locked blobs (from the store: sync first) into OUT, a plain tar."""
    from alex_models import api
    from alex_models.cli.progress import progress_for

    with progress_for(quiet or json_output, verbs=("adding", "added")) as progress:
        result = api.bundle_create(out, manifest, only=tuple(only or ()), progress=progress)
    if json_output:
        print_json(
            "bundle-create",
            {
                "path": str(result.path),
                "lock": result.lock_key,
                "manifest": result.manifest_key,
                "blobs": [blob_json(blob) for blob in result.blobs],
                "bytes": result.size,
                "seconds": round(result.seconds, 3),
            },
        )
        return
    if quiet:
        return
    for blob in result.blobs:
        say(f"added: {blob.label} ({human_size(blob.size)})")
    texts = "the lock and models.yaml" if result.manifest_key else "the lock"
    say(
        f"Wrote {result.path}: {texts}, {len(result.blobs)} blob(s) ({human_size(result.blob_bytes)}); "
        f"{human_size(result.size)} in all, in {result.seconds:.1f}s."
    )


@bundle_app.command("import")
def import_(
    bundle: Annotated[Path, typer.Argument(help="A tar written by 'bundle create'.")],
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Also write the bundle's lock and manifest into this folder as models.lock and "
            "models.yaml (replacing them).",
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    quiet: QuietOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Stream a bundle's blobs into the store, each verified against its name and the bundle's lock."""
    from alex_models import api
    from alex_models.cli.progress import progress_for

    with progress_for(quiet or json_output, verbs=("importing", "stored")) as progress:
        result = api.bundle_import(bundle, manifest, to=to, progress=progress)
    if json_output:
        print_json(
            "bundle-import",
            {
                "bundle": str(result.bundle),
                "store": str(result.store),
                "lock": result.lock_key,
                "imported": [blob_json(blob) for blob in result.imported],
                "skipped": [blob_json(blob) for blob in result.skipped],
                "bytes": result.bytes_imported,
                "complete": list(result.complete),
                "incomplete": list(result.incomplete),
                "written": [str(path) for path in result.written],
                "seconds": round(result.seconds, 3),
            },
        )
        return
    if quiet:
        return
    for blob in result.imported:
        say(f"imported: {blob.label} ({human_size(blob.size)})")
    for blob in result.skipped:
        say(f"skipped: {blob.label} ({human_size(blob.size)}, already in the store)")
    for path in result.written:
        say(f"wrote: {path}")
    if result.incomplete:
        say(f"not in this bundle (created with --only): {', '.join(result.incomplete)}")
    skipped = sum(blob.size for blob in result.skipped)
    say(
        f"Imported into {result.store}: {len(result.imported)} blob(s) "
        f"({human_size(result.bytes_imported)}), {len(result.skipped)} already there "
        f"({human_size(skipped)}), in {result.seconds:.1f}s."
    )
