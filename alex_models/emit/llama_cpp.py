"""Renderers: server specs -> the text each tool reads. Pure and deterministic.

| format             | for                                                   | models |
| ------------------ | ----------------------------------------------------- | ------ |
| llama-server       | the command line (for a shell; ``--json``: argv)       | one    |
| llama-server-env   | ``LLAMA_ARG_*`` variables for systemd and containers   | one    |
| router-preset      | ``llama-server --models-preset FILE`` (router mode)    | many   |
| llama-swap         | llama-swap's ``config.yaml``                           | many   |
| llama-cpp-python   | ``python -m llama_cpp.server --config_file FILE``      | many   |
| alex               | the app's provider config (merged into an existing one) | one    |
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import LiteralScalarString

from alex_models.emit import HEADER, ServerSpec, single, yaml_text
from alex_models.emit.app_config import alex_config
from alex_models.emit.flags import ServerFlags
from alex_models.emit.repo_preset import as_arguments
from alex_models.emit.shells import arguments, command_line, windows_quote
from alex_models.errors import UserError
from alex_models.formats import EmitFormat, Shell


def options(spec: ServerSpec, flags: ServerFlags, *, listen: bool = True) -> list[tuple[str, str | None]]:
    """The (long option, value) pairs of a spec, in a fixed order; extra ``args`` are not included."""
    runtime = spec.runtime
    pairs: list[tuple[str, str | None]] = [("--model", str(spec.model)), ("--alias", spec.name)]
    if listen:
        pairs += [("--host", spec.host), ("--port", str(spec.port))]
    if runtime.ctx_size is not None:
        pairs.append(("--ctx-size", str(runtime.ctx_size)))
    if runtime.n_gpu_layers is not None:
        pairs.append(("--n-gpu-layers", str(runtime.n_gpu_layers)))
    if spec.mmproj is not None:
        pairs.append(("--mmproj", str(spec.mmproj)))
    if spec.draft is not None:
        pairs.append((flags.draft, str(spec.draft)))
    if spec.spec_type is not None:
        pairs.append(("--spec-type", spec.spec_type))
    if spec.lora:
        if any("," in str(path) for path in spec.lora):
            raise UserError(
                f"model {spec.name!r}: a LoRA path has a comma, which --lora uses to separate them"
            )
        pairs.append(("--lora", ",".join(str(path) for path in spec.lora)))
    if runtime.chat_template is not None:
        pairs.append(("--chat-template", runtime.chat_template))
    if spec.chat_template_file is not None:
        pairs.append(("--chat-template-file", str(spec.chat_template_file)))
    return pairs


def _overridden(spec: ServerSpec, flags: ServerFlags, listen: bool = True) -> set[str]:
    """The long options the manifest and lock set for ``spec``: a repo preset's are below them."""
    ours = [option for option, _ in options(spec, flags, listen=listen)]
    ours += [group[0].partition("=")[0] for group in option_groups(spec.runtime.args)]
    return {flags.canonical(option.lstrip("-"))[0] for option in ours}


def preset_args(spec: ServerSpec, flags: ServerFlags) -> list[list[str]]:
    """The repo preset's settings the manifest and lock leave open, as llama-server arguments."""
    return as_arguments(spec.preset, flags, _overridden(spec, flags))


_SHORT = {"--model": "-m", "--ctx-size": "-c", "--n-gpu-layers": "-ngl"}
_NUMBER_RE = re.compile(r"-\d+(\.\d*)?")


def server_argv(
    spec: ServerSpec, flags: ServerFlags, *, binary: str = "llama-server", port: str | None = None
) -> list[str]:
    """The llama-server command line for one model. ``port`` replaces the spec's (``${PORT}``)."""
    argv = [binary, *(arg for group in preset_args(spec, flags) for arg in group)]
    for option, value in options(spec, flags):
        argv.append(_SHORT.get(option, option))
        argv.append(port if option == "--port" and port is not None else str(value))
    return [*argv, *spec.runtime.args]


def llama_server(spec: ServerSpec, flags: ServerFlags, shell: Shell = Shell.SH) -> str:
    """llama-server's command line, one line, quoted for ``shell``."""
    return command_line(server_argv(spec, flags), shell) + "\n"


def llama_server_json(spec: ServerSpec, flags: ServerFlags) -> str:
    """llama-server's argv as JSON (``emit llama-server --json``)."""
    return json.dumps({"argv": server_argv(spec, flags)}, indent=2) + "\n"


def llama_server_env(spec: ServerSpec, flags: ServerFlags, shell: Shell = Shell.SH) -> str:
    """``KEY=value`` lines (no quoting: systemd's EnvironmentFile and docker's --env-file both read them).

    Options without a variable are noted in a comment, quoted for ``shell``'s command line.
    """
    lines = [f"# {HEADER}", f"# model {spec.name}"]
    on_command_line: list[str] = []
    for option, value in options(spec, flags):
        name = flags.env_for(option)
        if name is None or value is None:  # llama-server reads some options (--lora) from argv only
            on_command_line += [option] if value is None else [option, value]
            continue
        # systemd's EnvironmentFile reads quotes and backslashes, docker's --env-file does not: such
        # a value would mean different things to them. Windows has no systemd, and its paths are
        # all backslashes: there only quotes and newlines are refused.
        refused = "\n\"'" if shell in (Shell.POWERSHELL, Shell.CMD) else "\n\"'\\"
        if any(c in value for c in refused):
            raise UserError(
                f"{option} value {value!r} has a newline, quote or backslash: env files disagree on those",
                hint="use paths without them (see ALEX_MODELS_HOME), or emit the llama-server command line",
            )
        lines.append(f"{name}={value}")
    on_command_line += spec.runtime.args
    on_command_line = [arg for group in preset_args(spec, flags) for arg in group] + on_command_line
    if on_command_line:
        lines.append(
            f"# pass these on the command line too (no LLAMA_ARG_* form): {arguments(on_command_line, shell)}"
        )
    return "\n".join(lines) + "\n"


def router_preset(specs: list[ServerSpec], flags: ServerFlags) -> str:
    """The INI of llama-server's router mode: a ``[*]`` section of shared settings, one section a model.

    Keys are the long option names without dashes; ``args`` must use long options to be expressible.
    """
    per_model = {spec.name: _preset_keys(spec, flags) for spec in specs}
    # Settings several models have alike go to [*] once; the model file never does.
    common = (
        set.intersection(*(set(keys.items()) for keys in per_model.values())) if len(per_model) > 1 else set()
    )
    common = {(key, value) for key, value in common if key != "model"}
    shared_keys = {key for key, _ in common}
    lines = [f"; {HEADER}", "version = 1", "", "[*]"]
    lines += [f"{key} = {value}" for key, value in sorted(common)]
    for spec in specs:
        lines += ["", f"[{spec.name}]"]
        lines += [f"{key} = {value}" for key, value in per_model[spec.name].items() if key not in shared_keys]
    return "\n".join(lines) + "\n"


def _preset_keys(spec: ServerSpec, flags: ServerFlags) -> dict[str, str]:
    # The section name is the model's name in router mode: no alias key.
    pairs = [(option, value) for option, value in options(spec, flags, listen=False) if option != "--alias"]
    overridden = _overridden(spec, flags, listen=False)
    # The repo preset's keys first, as its file spells them (llama.cpp reads them the same way).
    keys = {key: value for key, value in spec.preset if flags.canonical(key)[0] not in overridden}
    keys.update({option.removeprefix("--"): value or "true" for option, value in pairs})
    for first, *values in option_groups(spec.runtime.args):
        if not first.startswith("--"):
            raise UserError(
                f"model {spec.name!r}: router presets need long option names, and args has {first!r}",
                hint="write the long form in runtime.args (e.g. --flash-attn on, not -fa on)",
            )
        option, equals, inline = first.partition("=")
        if len(values) + bool(equals) > 1:
            raise UserError(
                f"model {spec.name!r}: {option} has {len(values) + bool(equals)} values in args, "
                "and a router preset key holds one"
            )
        keys[option.removeprefix("--")] = inline if equals else (values[0] if values else "true")
    if spec.runtime.load_on_startup is not None:  # a preset-only key: llama-server has no such option
        keys["load-on-startup"] = str(spec.runtime.load_on_startup).lower()
    return keys


def option_groups(args: list[str]) -> list[list[str]]:
    """``args`` cut before each option: ``[[option, value, …], …]``. ``-1`` is a value, not an option."""
    groups: list[list[str]] = []
    for arg in args:
        if not groups or (arg.startswith("-") and not _NUMBER_RE.fullmatch(arg)):
            groups.append([arg])
        else:
            groups[-1].append(arg)
    return groups


def llama_swap(specs: list[ServerSpec], flags: ServerFlags, shell: Shell = Shell.SH) -> str:
    """llama-swap's config: each model's llama-server command with ``--port ${PORT}``.

    llama-swap splits ``cmd`` itself, by POSIX rules, or on Windows by the Microsoft C runtime's:
    a Windows ``shell`` (the default there) selects the latter.
    """
    models = CommentedMap()
    for spec in specs:
        entry = CommentedMap()
        entry["cmd"] = LiteralScalarString(" \\\n  ".join(_command_lines(spec, flags, shell)) + "\n")
        entry["checkEndpoint"] = "/health"
        if spec.runtime.aliases:
            entry["aliases"] = list(spec.runtime.aliases)
        if spec.runtime.ttl is not None:
            entry["ttl"] = spec.runtime.ttl
        if spec.runtime.env:
            entry["env"] = [f"{key}={value}" for key, value in sorted(spec.runtime.env.items())]
        models[spec.name] = entry
    document = CommentedMap([("models", models)])
    document.yaml_set_start_comment(HEADER)
    return yaml_text(document)


def _command_lines(spec: ServerSpec, flags: ServerFlags, shell: Shell) -> list[str]:
    """llama-server's command for llama-swap, an option and its value a line; the port is llama-swap's."""
    quote = shlex.quote if shell is Shell.SH else windows_quote
    lines = ["llama-server", *(" ".join(quote(arg) for arg in group) for group in preset_args(spec, flags))]
    for option, value in options(spec, flags):
        shown = "${PORT}" if option == "--port" else quote(str(value))
        lines.append(f"{_SHORT.get(option, option)} {shown}")
    lines += [" ".join(quote(arg) for arg in group) for group in option_groups(spec.runtime.args)]
    return lines


def llama_cpp_python(specs: list[ServerSpec]) -> str:
    """The JSON config of ``python -m llama_cpp.server --config_file`` (one server, several models)."""
    if not specs:
        raise UserError("no model to emit")
    models: list[dict[str, Any]] = []
    for spec in specs:
        model: dict[str, Any] = {
            "model": str(spec.model),
            "model_alias": spec.name,
            "n_ctx": spec.runtime.ctx_size or 0,  # 0: the context the model was trained with
            "n_gpu_layers": spec.runtime.n_gpu_layers or 0,
        }
        if spec.mmproj is not None:
            model["clip_model_path"] = str(spec.mmproj)
        if len(spec.lora) > 1:
            raise UserError(
                f"model {spec.name!r}: llama-cpp-python's server takes one LoRA adapter, not {len(spec.lora)}"
            )
        if spec.lora:
            model["lora_path"] = str(spec.lora[0])
        models.append(model)
    config = {"host": specs[0].host, "port": specs[0].port, "models": models}
    return json.dumps(config, indent=2) + "\n"


@dataclass(frozen=True)
class RenderOptions:
    """What a renderer may need besides the specs; each takes what it uses."""

    flags: ServerFlags
    as_json: bool = False
    """llama-server: the argv as JSON instead of a shell line."""
    shell: Shell = Shell.SH
    """The shell a command line is for (llama-server, the env file's note; llama-swap: its platform)."""
    base_url: str | None = None
    """alex: the URL the app talks to."""
    existing: str | None = None
    """alex: the file being merged into."""


def _llama_server(specs: list[ServerSpec], options: RenderOptions) -> str:
    spec = single(specs, EmitFormat.LLAMA_SERVER)
    if options.as_json:
        return llama_server_json(spec, options.flags)
    return llama_server(spec, options.flags, options.shell)


def _alex(specs: list[ServerSpec], options: RenderOptions) -> str:
    # The app talks to one model; with several selected, the first in the manifest.
    return alex_config(specs[0], base_url=options.base_url, existing=options.existing)


RENDERERS: Mapping[EmitFormat, Callable[[list[ServerSpec], RenderOptions], str]] = {
    EmitFormat.LLAMA_SERVER: _llama_server,
    EmitFormat.LLAMA_SERVER_ENV: lambda specs, o: llama_server_env(
        single(specs, EmitFormat.LLAMA_SERVER_ENV), o.flags, o.shell
    ),
    EmitFormat.ROUTER_PRESET: lambda specs, o: router_preset(specs, o.flags),
    EmitFormat.LLAMA_SWAP: lambda specs, o: llama_swap(specs, o.flags, o.shell),
    EmitFormat.LLAMA_CPP_PYTHON: lambda specs, o: llama_cpp_python(specs),
    EmitFormat.ALEX: _alex,
}
"""One renderer per format: the table ``emit`` dispatches on."""
