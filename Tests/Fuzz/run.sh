#!/usr/bin/env bash
# Fuzzes the IDX reader, the .npy/.npz reader (FuzzNPY.swift), the CSV/TSV
# reader (FuzzCSV.swift), the checkpoint reader, the typed metadata documents
# inside a checkpoint (structural edits: FuzzTypedMetadata.swift), and the checkpoint reader
# with its checksums recomputed after each mutation (so that mutations reach
# the typed metadata and the resumed training state) with libFuzzer, for a
# fixed number of executions each (not part of the default test run):
#
#   Tests/Fuzz/run.sh [RUNS]        (default 200000 per target; FUZZ_TARGETS="IDX …" to choose;
#                                    FUZZ_SECONDS=N stops each target after N seconds)
#
# The engine's modules are built with coverage and AddressSanitizer in
# .build-fuzz; each target is linked against them with -sanitize=fuzzer.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-200000}
scratch=.build-fuzz
# Only library targets are built with the fuzzer's instrumentation (an
# executable would collide with libFuzzer's main).
flags=(-Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address)
swift build --scratch-path "$scratch" --target IWAE "${flags[@]}" >/dev/null
bin="$scratch/debug"
# The objects of the sources that exist now: a renamed or deleted Swift or C file
# leaves its old object behind in the build directory, which would link twice.
objects=$(for o in $(find "$bin"/IWAE.build "$bin"/IWAEData.build "$bin"/IWAECore.build "$bin"/IWAELinearAlgebra.build "$bin"/CIWAEKernels.build \
                          "$bin"/RealModule.build "$bin"/_NumericsShims.build -name '*.o' 2>/dev/null); do
              source=$(basename "$o" .o)
              case "$source" in
                  *.swift|*.c) [ -n "$(find Sources "$scratch/checkouts/swift-numerics/Sources" -name "$source" -print -quit)" ] && echo "$o" ;;
                  *) echo "$o" ;;
              esac
          done | tr '\n' ' ')
includes=(-I "$bin/Modules" -I CBLAS -I CZlib -I CDNNL -Xcc -fmodule-map-file="$bin/CIWAEKernels.build/module.modulemap"
          -Xcc -I/usr/include/x86_64-linux-gnu/openblas-pthread -I "$scratch/checkouts/swift-numerics/Sources/_NumericsShims/include")
# The fuzz targets call `package` API (Checkpoint.resealed): they join the
# package under the name SwiftPM gave it (read from the build manifest).
package_name=$(grep '"-module-name","IWAE",' "$scratch/debug.yaml" | head -1 | grep -o '"-package-name","[^"]*"' | cut -d'"' -f4)
mkdir -p "$scratch/fuzz/corpus-NPY" "$scratch/fuzz/corpus-CSV" "$scratch/fuzz/corpus-IDX" "$scratch/fuzz/corpus-Checkpoint" "$scratch/fuzz/corpus-ResealedCheckpoint" "$scratch/fuzz/corpus-TypedMetadata" "$scratch/fuzz/seed-data"
# Seeds: small IDX files (plain and gzip) and a real checkpoint of a tiny model.
python3 - "$scratch/fuzz" <<'PY'
import gzip, os, struct, sys
root = sys.argv[1]
def idx(shape, values):
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape) + bytes(values)
images = idx([6, 3, 3], [(i * 37) % 256 for i in range(54)])
labels = idx([6], [i % 3 for i in range(6)])
for name, data in [("images", images), ("labels", labels)]:
    open(f"{root}/corpus-IDX/{name}", "wb").write(data)
    open(f"{root}/corpus-IDX/{name}.gz", "wb").write(gzip.compress(data))
# Tables: .npy of several dtypes and layouts, an .npz (stored), CSV with a header and quotes.
def npy(descr, shape, payload, fortran=False):
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, "(%s)" % ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload
seeds = {"f4": npy("<f4", [3, 2], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
         "u1": npy("|u1", [2, 2, 2], bytes(range(8))),
         "f8be": npy(">f8", [2, 2], struct.pack(">4d", 1, -2, 3.5, 4), fortran=True),
         "i2": npy("<i2", [4], struct.pack("<4h", 1, -1, 7, 0))}
for name, data in seeds.items():
    open(f"{root}/corpus-NPY/{name}", "wb").write(data)
import io, zipfile
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w") as z:
    z.writestr("a.npy", seeds["f4"])
    z.writestr("train.npy", seeds["u1"], compress_type=zipfile.ZIP_DEFLATED)
open(f"{root}/corpus-NPY/npz", "wb").write(buffer.getvalue())
open(f"{root}/corpus-CSV/header", "wb").write(b'a,"b",c\r\n1,2.5,-3e2\n# comment\n\n4,"5",6\n')
open(f"{root}/corpus-CSV/plain", "wb").write(b"1\t2\n3\t4\n")
for name in ["train", "t10k"]:
    open(f"{root}/seed-data/{name}-images-idx3-ubyte", "wb").write(idx([40, 3, 3], [(i * 53) % 256 for i in range(360)]))
    open(f"{root}/seed-data/{name}-labels-idx1-ubyte", "wb").write(idx([40], [i % 3 for i in range(40)]))
PY
swift build -c release --product iwae >/dev/null
rm -rf "$scratch/fuzz/seed-run"
.build/release/iwae train --data "$scratch/fuzz/seed-data" --hidden 3 --latent 2 --epochs 1 --batch 10 --validation-examples 5 \
    --checkpoint-every 1 --out "$scratch/fuzz/seed-run" >/dev/null
cp "$scratch/fuzz/seed-run/model.safetensors" "$scratch/fuzz/corpus-Checkpoint/checkpoint"
cp "$scratch/fuzz/seed-run/model.safetensors" "$scratch/fuzz/corpus-ResealedCheckpoint/checkpoint"
# A mid-epoch checkpoint too (epoch order and position), interrupted after step 2.
rm -rf "$scratch/fuzz/seed-run-mid"
IWAE_FAULT_INTERRUPT_AT_STEP=2 .build/release/iwae train --data "$scratch/fuzz/seed-data" --hidden 3 --latent 2 --epochs 1 \
    --batch 10 --validation-examples 5 --out "$scratch/fuzz/seed-run-mid" >/dev/null 2>&1 || true
cp "$scratch/fuzz/seed-run-mid/model.safetensors" "$scratch/fuzz/corpus-ResealedCheckpoint/checkpoint-mid"
export SWIFT_BACKTRACE=enable=no
# Allocation stacks are not recorded (a third of the time went to them); errors are still caught.
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=0}
export IWAE_FUZZ_CHECKPOINT="$PWD/$scratch/fuzz/seed-run-mid/model.safetensors"
for target in ${FUZZ_TARGETS:-IDX NPY CSV Checkpoint ResealedCheckpoint TypedMetadata}; do
    exe="$scratch/fuzz/fuzz-$target"
    swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name Fuzz$target -package-name "$package_name" "${includes[@]}" \
        Tests/Fuzz/Fuzz$target.swift Tests/Fuzz/Resume.swift $objects -lz -lopenblas -llapacke -ldnnl -lgomp -o "$exe" 2> "$scratch/fuzz/link-$target.log" \
        || { echo "cannot build fuzz-$target: see $scratch/fuzz/link-$target.log" >&2; exit 1; }
    corpus="$scratch/fuzz/corpus-$target"
    mkdir -p "$corpus"
    echo "fuzzing $target for $runs executions"
    "$exe" -runs="$runs" ${FUZZ_SECONDS:+-max_total_time="$FUZZ_SECONDS"} -artifact_prefix="$scratch/fuzz/artifacts-$target-" -max_len=4096 -print_final_stats=1 "$corpus" 2>&1 | grep -E "stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY|Done" || true
done
