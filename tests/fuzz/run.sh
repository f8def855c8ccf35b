#!/usr/bin/env bash
# Runs the SMTP parser fuzzer for SECONDS on a scratch copy of the seed
# corpus (tests/fuzz/corpus), so that the corpus in the tree stays as it is.
# Exits non-zero when the fuzzer finds a crash; the reproducer is kept in
# BUILD_DIR/fuzz-artifacts/.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS   (BUILD_DIR configured with -DTERN_FUZZ=ON)
set -euo pipefail

if [[ $# -ne 2 || ! $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
seconds=$2
fuzzer="$build_dir/tests/fuzz/fuzz_smtp_parsers"
if [[ ! -x $fuzzer ]]; then
  echo "$fuzzer not found: build it with -DTERN_FUZZ=ON (make fuzz)" >&2
  exit 2
fi

seeds="$(cd "$(dirname "$0")" && pwd)/corpus"
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$seeds"/* "$corpus"/
artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$artifacts"

"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus"
