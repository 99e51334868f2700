#!/usr/bin/env bash
# Rebuilds the evaluation sets under data/eval/ with sink-make-eval-set and the
# GPT-2 tokenizer. Run from anywhere; it works from the repository root, and
# every path it passes is relative to that root, so the output (eval.jsonl and
# manifest.json, which record the paths as given) is byte-identical on every
# machine with the same checkout beside ../shared/data.
#
#   bash tools/data/build_eval_sets.sh            # rebuild all sets
#   bash tools/data/build_eval_sets.sh --check    # rebuild into a temp folder and compare with data/eval
#
# Environment: SINK_BIN (default build/release). The corpora and the tokenizer
# are fixed paths on purpose (they are recorded in the manifests).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${SINK_BIN:-build/release}
MAKE="$BIN/sink-make-eval-set"
SHARED=../shared/data
TOKENIZER=$SHARED/tokenizers/gpt2

# Corpora: moby-dick and austen are committed under data/corpora (< 5 MiB each);
# sotu.jsonl (10.3 MiB) is too large to commit and is read from ../shared/data.
SOTU=$SHARED/corpora/sotu.jsonl
MOBY=data/corpora/moby-dick.jsonl
AUSTEN=data/corpora/austen.jsonl

CHECK=0
case "${1:-}" in
  "") ;;
  --check) CHECK=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

[ -x "$MAKE" ] || { echo "$0: $MAKE not found (build first: cmake --build --preset release)" >&2; exit 2; }

# The corpora must be the ones the sets were made from (same hashes as ../shared/data/SHA256SUMS).
sha256sum --quiet -c - <<EOF
259309d3de8f164c27fe6ad73054e8748562a309ff9b8becbdadeed16ebfbe28  $SOTU
7c449bab416ddbc278aa27078545288f328dc1eb68af5ada4da3c7bf9c1ce656  $MOBY
d08ecf920f8c0e4068a2d9e4b4ab021393e6136ca30c92d7cf70dac8f03eb18c  $AUSTEN
EOF

OUTROOT=data/eval
if [ "$CHECK" = 1 ]; then
  # The manifests name eval.jsonl without its folder, so a set built elsewhere
  # must match data/eval byte for byte.
  OUTROOT=$(mktemp -d "${TMPDIR:-/tmp}/sink-eval-check.XXXXXX")
  trap 'rm -rf "$OUTROOT"' EXIT
fi

# name corpus n_samples max_length min_length seed
SETS=(
  "sotu_n100_ml512_seed42   $SOTU   100  512  512 42"   # demo (first 24 docs), tests
  "sotu_n100_ml2000_seed42  $SOTU   100 2000 2000 42"   # seed-model observation and SSP
  "sotu_n50_ml4000_seed42   $SOTU    50 4000 4000 42"   # long context (188 of 233 speeches have >= 4000 tokens)
  "moby_n24_ml512_seed42    $MOBY    24  512  512 42"   # a second corpus (128 of 135 chapters have >= 512 tokens)
  "austen_n32_ml512_seed7   $AUSTEN  32  512  512  7"   # calibration of mu: another corpus, disjoint from every sotu set
)

for row in "${SETS[@]}"; do
  read -r name corpus n ml minl seed <<<"$row"
  "$MAKE" --corpus "$corpus" --n_samples "$n" --max_length "$ml" --min_length "$minl" --seed "$seed" \
          --tokenizer "$TOKENIZER" --output "$OUTROOT/$name"
done

if [ "$CHECK" = 1 ]; then
  status=0
  for row in "${SETS[@]}"; do
    read -r name _ <<<"$row"
    for f in eval.jsonl manifest.json; do
      if ! cmp -s "$OUTROOT/$name/$f" "data/eval/$name/$f"; then
        echo "differs: data/eval/$name/$f" >&2; status=1
      fi
    done
  done
  [ "$status" = 0 ] && echo "data/eval is up to date (${#SETS[@]} sets)"
  exit "$status"
fi
