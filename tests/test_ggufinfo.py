"""GGUF headers checked against the names the files will have."""

from __future__ import annotations

import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alex_models.ggufinfo import GGUFInfo, NotGGUFError, check_gguf, read_gguf
from alex_models.tinymodels import write_tiny_gguf


def test_a_shard_named_as_another_shard_is_refused(tmp_path: Path) -> None:
    shard = write_tiny_gguf(tmp_path / "m.gguf", split=(1, 2))
    with pytest.raises(NotGGUFError, match="named shard 2 of 2, but its header says shard 1 of 2"):
        check_gguf(shard, "model-00002-of-00002.gguf")


def test_only_llama_cpp_shard_names_are_shards(tmp_path: Path) -> None:
    """llama.cpp looks for '-0000N-of-0000M.gguf' exactly; an upper-case suffix is no shard to it,
    so its number is not held against the header (one pattern, in _ids, for resolver and check)."""
    shard = write_tiny_gguf(tmp_path / "m.gguf", split=(1, 2))
    assert check_gguf(shard, "model-00002-of-00002.GGUF").split_no == 0


# -- the header reader against the gguf package's own reader ------------------------------------


def _facts_by_gguf_package(path: Path) -> GGUFInfo:
    """The facts as the ``gguf`` package's reader (numpy) sees them: what ``read_gguf`` used to use."""
    from gguf import GGUFReader

    reader = GGUFReader(path, "r")

    def field(key: str) -> object:
        found = reader.fields.get(key)
        return None if found is None else found.contents()

    arch = field("general.architecture")
    arch = arch if isinstance(arch, str) else None
    context = field(f"{arch}.context_length") if arch else None
    split_no, split_count = field("split.no"), field("split.count")
    return GGUFInfo(
        version=int(field("GGUF.version")),  # type: ignore[call-overload]
        architecture=arch,
        context_length=context if isinstance(context, int) else None,
        has_chat_template=isinstance(field("tokenizer.chat_template"), str),
        split_no=split_no if isinstance(split_no, int) else None,
        split_count=split_count if isinstance(split_count, int) else None,
        tensor_count=len(reader.tensors),
    )


_KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=12).map(lambda k: f"x.{k}")
_VALUES = st.one_of(
    st.text(max_size=20),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.floats(allow_nan=False, width=32),
    st.lists(st.text(max_size=8), min_size=1, max_size=20),
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arch=st.sampled_from(["llama", "qwen2", "gemma3"]),
    context=st.one_of(st.none(), st.integers(1, 2**31)),
    template=st.one_of(st.none(), st.text(max_size=40)),
    split=st.one_of(st.none(), st.tuples(st.integers(1, 9), st.integers(9, 12))),
    extra=st.dictionaries(_KEY, _VALUES, max_size=6),
    shapes=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=4), min_size=1, max_size=4),
    alignment=st.sampled_from([None, 8, 64]),
    big_endian=st.booleans(),
)
def test_the_header_facts_are_the_gguf_packages_for_any_header(
    tmp_path: Path,
    arch: str,
    context: int | None,
    template: str | None,
    split: tuple[int, int] | None,
    extra: dict[str, object],
    shapes: list[list[int]],
    alignment: int | None,
    big_endian: bool,
) -> None:
    import numpy as np
    from gguf import GGUFEndian, GGUFWriter

    path = tmp_path / f"m-{uuid.uuid4().hex}.gguf"
    writer = GGUFWriter(path, arch=arch, endianess=GGUFEndian.BIG if big_endian else GGUFEndian.LITTLE)
    if context is not None:
        writer.add_context_length(context)
    if template is not None:
        writer.add_chat_template(template)
    if split is not None:
        writer.add_uint16("split.no", split[0] - 1)
        writer.add_uint16("split.count", split[1])
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for key, value in extra.items():
        if isinstance(value, list):
            writer.add_array(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, str(value))
    for n, shape in enumerate(shapes):
        writer.add_tensor(f"t{n}", np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    assert read_gguf(path) == _facts_by_gguf_package(path)


def test_every_cut_of_a_header_is_one_not_gguf_error(tmp_path: Path) -> None:
    whole = write_tiny_gguf(tmp_path / "m.gguf", chat_template="{{ x }}", split=(1, 2)).read_bytes()
    header_end = len(whole) - 4  # the one tensor's 4 bytes of data (and its padding) come last
    cut = tmp_path / "cut.gguf"
    for length in range(header_end - 32):
        cut.write_bytes(whole[:length])
        with pytest.raises(NotGGUFError, match=r"cut\.gguf"):
            read_gguf(cut)


def _header(
    *, version: int = 3, kvs: bytes = b"", kv_count: int = 0, tensors: bytes = b"", tensor_count: int = 0
) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensor_count, kv_count) + kvs + tensors


def _string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (_header(version=1), "version 1 is not one llama.cpp reads"),
        (_header(kvs=_string(b"a") + struct.pack("<II", 4, 1) + _string(b"a") + struct.pack("<II", 4, 2), kv_count=2),
         "the key 'a' appears twice"),
        (_header(kvs=_string(b"a") + struct.pack("<I", 13), kv_count=1), "unknown value type 13"),
        (_header(kvs=_string(b"\xff\xfe") + struct.pack("<II", 4, 1), kv_count=1), "the name at byte 32 is not UTF-8"),
        (_header(kvs=_string(b"a" * 70000) + struct.pack("<II", 4, 1), kv_count=1), "70000 bytes long"),
        (_header(kvs=_string(b"a") + struct.pack("<IIQ", 9, 8, 3) + struct.pack("<Q", 2**64 - 1), kv_count=1),
         "runs past the end"),
        (_header(kvs=_string(b"general.alignment") + struct.pack("<II", 4, 24), kv_count=1), "not a power of two"),
        (_header(kvs=_string(b"general.alignment") + struct.pack("<IQ", 10, 32), kv_count=1), "not a 32-bit"),
        (_header(tensors=_string(b"t") + struct.pack("<I", 5) + struct.pack("<5Q", 1, 1, 1, 1, 1) + struct.pack("<IQ", 0, 0),
                 tensor_count=1), "has 5 dimensions"),
        (_header(tensors=_string(b"t") + struct.pack("<IQIQ", 1, 1, 0, 3), tensor_count=1), "misaligned or past the end"),
        (_header(kvs=_string(b"a") + struct.pack("<IIQ", 9, 8, 2**40), kv_count=1), "runs past the end|ends inside"),
        (_header(kvs=_string(b"a") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 5000, kv_count=1),
         "nested over 16 deep"),
    ],
    ids=["version-1", "duplicate-key", "unknown-type", "not-utf8-key", "long-key", "string-of-2-64-bytes", "alignment-24", "alignment-u64", "five-dims",
         "misaligned-tensor", "huge-array", "deep-arrays"],
)  # fmt: skip
def test_a_header_llama_cpp_refuses_is_refused_with_what_is_wrong(
    tmp_path: Path, header: bytes, says: str
) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(header + bytes(64))
    with pytest.raises(NotGGUFError, match=says):
        read_gguf(path, label="org/repo/bad.gguf")


def test_reading_a_header_does_not_load_numpy(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", context_length=4096)
    code = (
        f"import sys; from pathlib import Path; from alex_models.ggufinfo import read_gguf; "
        f"assert read_gguf(Path({str(path)!r})).context_length == 4096; assert 'numpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # fmt: skip


def test_a_value_that_is_not_utf8_is_read_as_llama_cpp_reads_it(tmp_path: Path) -> None:
    """llama.cpp decodes only the values it uses: a name in Latin-1 does not make the file unusable."""
    path = tmp_path / "m.gguf"
    value = _string(b"caf\xe9")
    kvs = _string(b"general.name") + struct.pack("<I", 8) + value
    kvs += _string(b"general.architecture") + struct.pack("<I", 8) + _string(b"llama")
    path.write_bytes(_header(kvs=kvs, kv_count=2) + bytes(64))

    assert read_gguf(path).architecture == "llama"
