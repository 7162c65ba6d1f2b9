"""Writing ``models.yaml``: the starter ``init`` writes, and ``add``'s edit that keeps the user's
comments and order (ruamel round-trip, or a text edit where that reads better)."""

from __future__ import annotations

import re

from ruamel.yaml.comments import CommentedMap

from alex_models._yaml import dump_yaml, load_document, with_entry_appended
from alex_models.errors import UserError
from alex_models.manifest import Manifest, ManifestError, parse_manifest

STARTER_MANIFEST = """\
# models.yaml: the local LLM weights this project runs, for alex-models.
# Commit it with models.lock; CI runs 'alex-models lock --check' and 'alex-models sync --locked'.
# Add a model with 'alex-models add REPO --quant Q4_K_M' (it locks too), or write one under
# 'models:' like the examples there, then run 'alex-models lock'.
version: 1

defaults:
  revision: main            # branch, tag or 40-hex commit, for models that name none
  # runtime: {ctx_size: 4096}

models: {}
  # The name is the llama-server alias and the app's llm_model.
  # qwen2.5-0.5b:
  #   repo: Qwen/Qwen2.5-0.5B-Instruct-GGUF   # Hugging Face repo id
  #   quant: Q4_K_M                           # or file: <path>, or files: [globs]
  #   mmproj: mmproj-f16.gguf                 # projector of a vision model, same repo
  #   runtime: {ctx_size: 8192, n_gpu_layers: 99, args: ["--jinja"]}
  #
  # tiny-draft:
  #   url: https://example.org/files/draft.gguf   # a plain HTTPS file
  #   sha256: <64 hex>                             # optional: pinned before lock

# emit:
#   - {format: llama-swap, path: deploy/llama-swap.yaml}
"""


EMPTY_MANIFEST = """\
# models.yaml: the local LLM weights this project runs, for alex-models.
version: 1
models: {}
"""


def model_name_for(repo: str) -> str:
    """A model name from a repo id: 'Qwen/Qwen2.5-0.5B-Instruct-GGUF' -> 'qwen2.5-0.5b-instruct'."""
    base = repo.rsplit("/", maxsplit=1)[-1]
    for suffix in ("-GGUF", "_GGUF", "-gguf", "_gguf"):
        base = base.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._").lower() or "model"


def with_model(text: str, name: str, entry: dict[str, object], filename: str) -> str:
    """``text`` with model ``name`` added at the end of ``models:``, comments and order kept;
    validated before it is returned."""
    current = parse_manifest(text, filename)  # edit only a manifest that is valid as it stands
    if name in current.models:
        raise UserError(f"{filename} already has a model named {name!r}", hint="pick another with --name")
    document = load_document(text, filename, ManifestError, what="'version' and 'models'")
    models = document.get("models")
    if isinstance(models, CommentedMap) and models:
        edited = with_entry_appended(text, models, name, entry)
        if edited is not None and _adds_only(current, edited, name, filename):
            return edited
    # No entry to follow (or a layout the text edit misread): ruamel writes the mapping.
    if not isinstance(models, CommentedMap):  # no "models:" key yet, or "models:" left empty
        models = CommentedMap()
        document["models"] = models
    models.fa.set_block_style()  # "models: {}" is a flow mapping; entries read better as blocks
    models[name] = CommentedMap(entry)
    text = dump_yaml(document)
    parse_manifest(text, filename)
    return text


def _adds_only(current: Manifest, edited: str, name: str, filename: str) -> bool:
    """Whether ``edited`` says what ``current`` says plus model ``name``: the text edit's check."""
    try:
        after = parse_manifest(edited, filename)
    except ManifestError:
        return False  # the entry itself may be wrong: the other path reports it
    return (
        list(after.models) == [*current.models, name]
        and after.model_copy(update={"models": current.models}) == current
    )
