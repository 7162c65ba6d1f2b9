"""Commands on the project's files: ``init``, ``add``, ``lock``, ``outdated``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alex_models.cli.options import JsonOpt, ManifestOpt, complete_model_name
from alex_models.cli.render import labelled, print_json, say, warn

if TYPE_CHECKING:
    from alex_models.api import LockResult, OutdatedModel


def init(manifest: ManifestOpt = Path("models.yaml"), json_output: JsonOpt = False) -> None:
    """Write a commented starter models.yaml."""
    from alex_models import api

    path = api.init(manifest)
    if json_output:
        print_json("init", {"manifest": str(path.absolute())})
        return
    say(f"Wrote {path}. Next: 'alex-models add REPO --quant Q4_K_M', or edit it and run 'alex-models lock'.")


def add(
    repo: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.")],
    files: Annotated[
        list[str] | None, typer.Argument(help="Files or globs in the repo (or use --quant).")
    ] = None,
    quant: Annotated[
        str | None, typer.Option(help="Pick the GGUF with this quant label, e.g. Q4_K_M.")
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit (default: the manifest's).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: from the repo name).")] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Add a model to models.yaml (comments kept) and lock it."""
    from alex_models import api

    result = api.add(repo, files or [], quant=quant, revision=revision, name=name, manifest_path=manifest)
    if json_output:
        print_json(
            "add", {"name": result.name, "manifest": str(result.manifest_path), **_lock_json(result.lock)}
        )
        return
    say(f"Added {result.name} to {result.manifest_path}; locked in {result.lock.lock_path}.")


def lock(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the lock is out of date.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Resolve, then print what the lock would get, model by model; write nothing."
        ),
    ] = False,
    upgrade: Annotated[
        bool, typer.Option("--upgrade", help="Re-resolve every model, not only changed ones.")
    ] = False,
    upgrade_model: Annotated[
        list[str] | None,
        typer.Option(
            "--upgrade-model", help="Re-resolve this model (repeatable).", autocompletion=complete_model_name
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Resolve models.yaml into models.lock: exact commits, sizes and SHA256 of every file."""
    from alex_models import api
    from alex_models.errors import UsageError

    if check and dry_run:
        raise UsageError(
            "--check and --dry-run do not go together",
            hint="--check compares the lock with models.yaml offline; --dry-run resolves and shows changes",
        )
    chosen: bool | frozenset[str] = True if upgrade else frozenset(upgrade_model or ())
    result = api.lock(manifest, check=check, dry_run=dry_run, upgrade=chosen or False)
    if json_output:
        print_json("lock", _lock_json(result))
    elif dry_run:
        _say_changes(result)
    elif check:
        _say_check(result, manifest)
    elif result.written:
        kept = "" if not result.resolved else f" (resolved {', '.join(result.resolved)})"
        say(f"Wrote {result.lock_path}{kept}.")
    else:
        say(f"{result.lock_path} is up to date.")
    if check and result.stale:
        raise typer.Exit(1)


def _say_check(result: LockResult, manifest: Path) -> None:
    if result.stale:
        warn(f"{result.lock_path} is out of date with {manifest}:")
        for change in result.drift:
            warn(f"  {change.describe()}")
        labelled("hint", "run 'alex-models lock' and commit models.lock")
    else:
        say(f"{result.lock_path} is up to date with {manifest}.")


def _say_changes(result: LockResult) -> None:
    if not result.changes:
        say(f"{result.lock_path} would not change.")
        return
    say(f"{result.lock_path} would change (nothing written):")
    for model in result.changes:
        for line in model.describe():
            say(line)


def _lock_json(result: LockResult) -> dict[str, object]:
    return {
        "lock": str(result.lock_path),
        "stale": result.stale,
        "drift": [{"name": d.name, "kind": d.kind, "change": d.describe()} for d in result.drift],
        "resolved": list(result.resolved),
        "written": result.written,
        "changes": [change.as_json() for change in result.changes],
    }


def outdated(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME",
            help="Models to check (default: all locked).",
            autocompletion=complete_model_name,
        ),
    ] = None,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="Exit 1 when a model is outdated or its repo can no longer be resolved (for scheduled CI).",
        ),
    ] = False,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Show which locked models moved upstream (a new commit on their branch or tag); write nothing."""
    from alex_models import api

    result = api.outdated(names or (), manifest)
    if json_output:
        print_json(
            "outdated",
            {
                "lock": str(result.lock_path),
                "outdated": list(result.outdated),
                "failed": list(result.failed),
                "models": [_outdated_json(model) for model in result.models],
            },
        )
    else:
        for model in result.models:
            for line in _outdated_lines(model):
                say(line)
        if result.outdated:
            say(
                f"{len(result.outdated)} of {len(result.models)} outdated: 'alex-models lock --upgrade' "
                "takes the new commits (or --upgrade-model NAME, one model)."
            )
        if result.failed:
            say(f"{len(result.failed)} of {len(result.models)} cannot be resolved any more (marked !).")
        elif not result.outdated:
            say("Nothing outdated.")
    if exit_code and (result.outdated or result.failed):
        raise typer.Exit(1)


def _outdated_lines(model: OutdatedModel) -> list[str]:
    from alex_models.lockdiff import pin

    locked = model.locked
    if model.change is not None:
        return model.change.describe()
    if model.problem is not None:
        hint = [] if model.problem.hint is None else [f"    hint: {model.problem.hint}"]
        return [f"! {model.name}: {model.problem.message}", *hint]
    if model.status == "current":
        return [f"= {model.name}: {pin(locked)}, up to date"]
    if model.status == "pinned" and locked.source == "oci":
        return [f"= {model.name}: {locked.input.oci}, a digest, which cannot move"]
    if model.status == "pinned":
        return [
            f"= {model.name}: {locked.repo} pinned to commit {(locked.commit or '')[:12]}, which cannot move"
        ]
    return [f"= {model.name}: {locked.url or locked.source}: no revision to move, nothing to check"]


def _outdated_json(model: OutdatedModel) -> dict[str, object]:
    locked, problem = model.locked, model.problem
    return {
        "name": model.name,
        "status": model.status,
        "source": locked.source,
        "repo": locked.repo,
        "revision": locked.revision,
        "url": locked.url,
        "oci": locked.input.oci,
        "locked_commit": locked.commit,
        "current_commit": None if locked.source == "oci" else model.current_commit,
        "locked_digest": locked.digest,
        "current_digest": model.current_commit if locked.source == "oci" else None,
        "files": [] if model.change is None else [f.as_json() for f in model.change.files],
        "error": None
        if problem is None
        else {"type": type(problem).__name__, "message": problem.message, "hint": problem.hint},
    }
