"""``alex-models demo``: lock -> sync -> emit -> llama-server on this machine, shown step by step."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alex_models._units import human_size
from alex_models.cli.options import JsonOpt
from alex_models.cli.render import print_json, say

if TYPE_CHECKING:
    from alex_models.api._demo import DemoStep


def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            metavar="DIR",
            help="Build the project and its store in DIR (new or empty) and keep them, to look at "
            "models.yaml and models.lock afterwards.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Lock, sync and emit a tiny model from a mirror on this machine, then chat with it in llama-server.

    No network or configuration needed; all it starts or writes is gone when it ends (unless --keep).
    """
    from alex_models.api._demo import demo as run_demo

    result = run_demo(keep=keep, on_step=None if json_output else _show)
    if json_output:
        print_json(
            "demo",
            {
                "steps": [_as_json(step) for step in result.steps],
                "workspace": result.workspace,
                "kept": result.kept,
            },
        )
    elif result.kept:
        say(f"kept: {result.workspace} (models.yaml, models.lock, store/)")
    else:
        say("done: the servers are stopped and the demo's files removed; 'alex-models init' starts a project")


def _show(step: DemoStep) -> None:
    from alex_models.api._demo import ChatStep, EmitStep, LockStep, MirrorStep, SyncStep

    if isinstance(step, MirrorStep):
        say(f"mirror: serving {step.repo} ({step.file}, {human_size(step.size)}) at {step.endpoint}")
    elif isinstance(step, LockStep):
        files = f"{len(step.files)} file{'s' if len(step.files) != 1 else ''}"
        size = human_size(sum(file.size for file in step.files))
        say(f"lock: pinned {step.repo}@{step.commit[:12]}, {files}, {size}, in {step.lock_path}")
    elif isinstance(step, SyncStep):
        count = len(step.downloaded)
        files = f"{count} file{'s' if count != 1 else ''}"
        size = human_size(step.bytes_received)
        say(f"sync: downloaded {files} ({size}) in {step.seconds:.1f}s into {step.store}")
        say(f"      verified by SHA256; llama.cpp reads {step.model}")
    elif isinstance(step, EmitStep):
        from alex_models.api import default_shell  # the API loads only when a command runs
        from alex_models.emit.shells import command_line

        say(f"emit: {command_line(step.argv, default_shell())}")  # as this system's shell reads it
    elif isinstance(step, ChatStep):
        if step.reply is None:
            say("chat: llama-server not on PATH: skipped the chat step; install llama.cpp to see it answer")
        else:
            # Random weights: the reply is noise, control characters too; JSON quoting shows it safely.
            reply = json.dumps(step.reply, ensure_ascii=False)
            say(f"chat: {step.llama_server} answered {step.prompt!r} with {reply} (random weights: noise)")
    sys.stdout.flush()  # each step shows as it happens, also through a pipe


def _as_json(step: DemoStep) -> dict[str, Any]:
    from alex_models.api._demo import ChatStep, EmitStep, LockStep, MirrorStep

    if isinstance(step, MirrorStep):
        return {
            "step": "mirror",
            "endpoint": step.endpoint,
            "repo": step.repo,
            "file": step.file,
            "size": step.size,
        }
    if isinstance(step, LockStep):
        return {
            "step": "lock",
            "lock": str(step.lock_path),
            "repo": step.repo,
            "commit": step.commit,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in step.files],
        }
    if isinstance(step, EmitStep):
        return {"step": "emit", "argv": list(step.argv)}
    if isinstance(step, ChatStep):
        return {
            "step": "chat",
            "skipped": step.skipped,
            "llama_server": str(step.llama_server) if step.llama_server else None,
            "base_url": step.base_url,
            "prompt": step.prompt,
            "reply": step.reply,
            "seconds": round(step.seconds, 3),
        }
    return {
        "step": "sync",
        "store": str(step.store),
        "downloaded": list(step.downloaded),
        "bytes": step.bytes_received,
        "seconds": round(step.seconds, 3),
        "model": str(step.model),
    }
