"""Small GGUF models written from nothing, for the tests, the benchmarks and the offline demo.

``write_tiny_gguf`` makes small, header-valid GGUF files (llama.cpp cannot load them: enough for
the store and the header checks); ``write_tiny_llama`` makes a real, tiny llama model that
llama.cpp loads and runs (random weights, so it talks nonsense).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def write_tiny_gguf(
    path: Path,
    *,
    architecture: str = "llama",
    context_length: int = 2048,
    chat_template: str | None = None,
    split: tuple[int, int] | None = None,
    padding: int = 0,
) -> Path:
    """Write a small valid GGUF: a few header keys and one tensor of ``padding`` extra bytes.

    ``split=(no, count)`` marks it as shard ``no`` (1-based, as in its file name) of ``count``.
    """
    import numpy as np  # noqa: PLC0415
    from gguf import GGUFWriter  # noqa: PLC0415

    writer = GGUFWriter(path, arch=architecture)
    writer.add_context_length(context_length)
    writer.add_block_count(1)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if split is not None:
        writer.add_uint16("split.no", split[0] - 1)
        writer.add_uint16("split.count", split[1])
        writer.add_int32("split.tensors.count", split[1])
    writer.add_tensor("weights", np.zeros(max(1, padding // 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


TINY_LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML, as Jinja: llama-server and llama-cpp-python both render it from the GGUF."""

_TINY_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Pairs merged in this order (rank = position); "Ġ" is GPT-2's byte-level form of a space.
_TINY_MERGES = (
    "Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "o r", "e n", "Ġ w",
    "Ġ o", "e s", "Ġ c", "i s", "a n", "e d", "Ġ b", "i t", "a l", "Ġ m", "Ġ f", "Ġ p", "in g",
    "o u", "Ġ h", "l e", "a r", "Ġ d", "Ġ i", "Ġ l", "Ġ n", "Ġ e", "Ġ y", "o w", "l l", "Ġ he",
    "Ġ is", "Ġw or", "l d", "Ġwor ld", "ll o", "Ġhe llo", "Ġ in", "Ġ on", "Ġ re", "Ġ an",
)  # fmt: skip
_TINY_EMBD, _TINY_HEADS, _TINY_FF, _TINY_LAYERS, _TINY_CONTEXT = 64, 4, 128, 2, 256


def _gpt2_byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode table: byte ``b`` as the printable character ``tokens[b]``."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)}
    tokens = []
    for byte in range(256):  # the others move, in order, to 256, 257, …
        tokens.append(chr(byte) if byte in printable else chr(256 + byte - sum(b < byte for b in printable)))
    return tokens


def _tiny_vocab() -> tuple[list[str], list[str], list[int]]:
    """Tokens, merges and token types: the 256 byte tokens, one token per merge, then the specials."""
    from gguf import TokenType  # noqa: PLC0415

    tokens = _gpt2_byte_tokens()
    merges: list[str] = []
    for merge in _TINY_MERGES:
        merged = merge.replace(" ", "")
        left, right = merge.split(" ")
        if left not in tokens or right not in tokens:  # a mistake in the table above
            raise ValueError(f"merge {merge!r} joins a token the vocabulary does not have yet")
        merges.append(merge)
        if merged not in tokens:
            tokens.append(merged)
    types = [int(TokenType.NORMAL)] * len(tokens) + [int(TokenType.CONTROL)] * len(_TINY_SPECIAL_TOKENS)
    return [*tokens, *_TINY_SPECIAL_TOKENS], merges, types


def write_tiny_llama(path: Path, *, seed: int = 0, split: int = 1) -> list[Path]:
    """Write a real llama model that llama.cpp loads and runs; return the files written.

    Architecture ``llama``: 2 layers, 64-wide embeddings, 4 heads, feed-forward 128, a trained
    context of 256 tokens, F16 weights (F32 norms) drawn from numpy's generator seeded with
    ``seed``, so the same arguments write the same bytes. A byte-level BPE vocabulary
    (``tokenizer.ggml.model`` ``gpt2``) of the 256 byte tokens, a few dozen merges and ChatML's
    special tokens, and a ChatML ``tokenizer.chat_template``, so ``/v1/chat/completions`` works.
    About 250 KB; the weights are random, so its replies are gibberish.

    ``split=N`` writes an N-way split model as llama.cpp's ``gguf-split`` does: ``path``'s stem
    plus ``-00001-of-0000N.gguf`` and so on, each shard carrying ``split.no`` (0-based),
    ``split.count`` and ``split.tensors.count``, the metadata in the first shard only.
    """
    import numpy as np  # noqa: PLC0415
    from gguf import GGUFWriter  # noqa: PLC0415

    tokens, merges, types = _tiny_vocab()
    n_embd, n_head, n_ff, n_layer = _TINY_EMBD, _TINY_HEADS, _TINY_FF, _TINY_LAYERS
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> npt.NDArray[np.float16]:
        # numpy's shape is the reverse of GGUF's: (rows, columns) here is {columns, rows} there.
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    def ones(size: int) -> npt.NDArray[np.float32]:
        return np.ones(size, dtype=np.float32)

    tensors: list[tuple[str, npt.NDArray[np.floating[Any]]]] = [
        ("token_embd.weight", weights(len(tokens), n_embd)),
        ("output_norm.weight", ones(n_embd)),
        ("output.weight", weights(len(tokens), n_embd)),
    ]
    for i in range(n_layer):
        tensors += [
            (f"blk.{i}.attn_norm.weight", ones(n_embd)),
            (f"blk.{i}.attn_q.weight", weights(n_embd, n_embd)),
            (f"blk.{i}.attn_k.weight", weights(n_embd, n_embd)),
            (f"blk.{i}.attn_v.weight", weights(n_embd, n_embd)),
            (f"blk.{i}.attn_output.weight", weights(n_embd, n_embd)),
            (f"blk.{i}.ffn_norm.weight", ones(n_embd)),
            (f"blk.{i}.ffn_gate.weight", weights(n_ff, n_embd)),
            (f"blk.{i}.ffn_up.weight", weights(n_ff, n_embd)),
            (f"blk.{i}.ffn_down.weight", weights(n_embd, n_ff)),
        ]
    if not 1 <= split <= len(tensors):
        raise ValueError(f"split must be between 1 and {len(tensors)} (one tensor a shard at most)")
    per_shard = -(-len(tensors) // split)  # ceiling
    shards = -(-len(tensors) // per_shard)
    if shards != split:
        raise ValueError(f"{len(tensors)} tensors do not split into {split} shards evenly enough")

    writer = GGUFWriter(path, arch="llama", split_max_tensors=per_shard if split > 1 else 0)
    writer.add_name("alex-models tiny llama")
    writer.add_context_length(_TINY_CONTEXT)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(1)  # mostly F16
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(TINY_LLAMA_CHAT_TEMPLATE)
    for name, data in tensors:
        writer.add_tensor(name, data)
    written = writer.format_shard_names(path)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return written
