#!/usr/bin/env bash
# Runs every parser fuzzer for SECONDS in all (split evenly), each on a
# scratch copy of its seed corpus, so that the corpora in the tree stay as
# they are:
#   fuzz_smtp_parsers    tests/fuzz/corpus          (what clients send us)
#   fuzz_client_parsers  tests/fuzz/corpus_client   (SMTP replies, DNS responses)
#   fuzz_dsn_builder     tests/fuzz/corpus_dsn      (remote replies, ENVID, ORCPT in DSNs)
#   fuzz_pop3_command    tests/fuzz/corpus_pop3     (POP3 command lines)
# Exits non-zero when a fuzzer finds a crash; the reproducer is kept in
# BUILD_DIR/fuzz-artifacts/.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS   (BUILD_DIR configured with -DTERN_FUZZ=ON)
set -euo pipefail

if [[ $# -ne 2 || ! $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
here="$(cd "$(dirname "$0")" && pwd)"
targets=(smtp_parsers:corpus client_parsers:corpus_client dsn_builder:corpus_dsn pop3_command:corpus_pop3)
seconds=$(( $2 / ${#targets[@]} ))
(( seconds > 0 )) || seconds=1
artifacts="$build_dir/fuzz-artifacts"
mkdir -p "$artifacts"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for target in "${targets[@]}"; do
  name=${target%%:*}
  fuzzer="$build_dir/tests/fuzz/fuzz_$name"
  if [[ ! -x $fuzzer ]]; then
    echo "$fuzzer not found: build it with -DTERN_FUZZ=ON (make fuzz)" >&2
    exit 2
  fi
  corpus="$scratch/$name"
  mkdir -p "$corpus"
  cp "$here/${target#*:}"/* "$corpus"/
  "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$corpus"
done
