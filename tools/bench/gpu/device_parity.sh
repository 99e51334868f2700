#!/usr/bin/env bash
# On a GPU machine (see device_bench.sh): our forward on CUDA against HF transformers'
# eager forward on the same GPU, float32 and bfloat16, every family's tiny checkpoint
# (tests/model/test_parity_hf.py with SINK_DEVICE=cuda: logits, all hidden states, all
# attention patterns). pytest comes from .deps/py (fetch_debs.sh copies it there).
#   tools/bench/gpu/device_parity.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:?OUT_DIR}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
mkdir -p /tmp/deps && for f in .deps/*.deb; do dpkg -x "$f" /tmp/deps; done
tools/bench/gpu/build_sink_bench.sh /tmp/deps /tmp/sb > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
python3 tools/fixtures/make_tiny_models.py /tmp/fx/tiny --corpus .deps/moby-dick.jsonl > "$OUT/fixtures.log" 2>&1 || { tail -20 "$OUT/fixtures.log"; exit 1; }
SINK_DEVICE=${SINK_DEVICE:-cuda} SINK_BUILD_DIR=/tmp/sb SINK_FIXTURES=/tmp/fx PYTHONPATH="$PWD/.deps/py:$PWD/tests/model" \
  python3 -m pytest -q -p no:cacheprovider tests/model/test_parity_hf.py 2>&1 | tail -30 | tee "$OUT/parity.txt"
cp /tmp/fx/parity_report.jsonl "$OUT/" 2>/dev/null
python3 - "$OUT/parity_report.jsonl" <<'PY' | tee -a "$OUT/parity.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for dt in ("float32", "bfloat16"):
    r = [x for x in rows if f"/{dt}" in x["case"]]
    if r:
        print(f"{dt}: {len(r)} cases, logits_rel <= {max(x['logits_rel'] for x in r):.2e}, "
              f"hidden_rel <= {max(x['hidden_rel'] for x in r):.2e}, attn_max_abs <= {max(x['attn_max_abs'] for x in r):.2e}")
PY
