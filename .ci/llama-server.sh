#!/usr/bin/env bash
# Prints the path of a llama-server binary, building it first if needed.
#
# llama.cpp's sources ship inside the llama-cpp-python source distribution on PyPI (the only
# registry this project's machines reach), so that is where they come from. The binary is cached
# outside the repo (ALEX_MODELS_CI_CACHE, default ~/.cache/alex-models-ci) and reused by later runs.
# About 4 minutes on 2 cores the first time.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${ALEX_MODELS_CI_CACHE:-$HOME/.cache/alex-models-ci}"
PREFIX="$CACHE/llama-server-$VERSION"
BINARY="$PREFIX/llama-server"

if [ -x "$BINARY" ] && "$BINARY" --version >/dev/null 2>&1; then
    echo "$BINARY"
    exit 0
fi

mkdir -p "$CACHE"
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SOURCE="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
cmake -S "$SOURCE" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$PREFIX"
cp "$WORK/build/bin/llama-server" "$BINARY.tmp"
mv "$BINARY.tmp" "$BINARY"
echo "$BINARY"
