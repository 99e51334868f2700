# shellcheck shell=bash
# Shared by slurm/observe.sbatch, slurm/intervene.sbatch and slurm/sweep.sbatch
# (sourced, not run). Builds and runs the sink-run command line of a batch job.
#
# Environment a job reads (all optional; sbatch passes the submitting shell's
# environment to the job):
#   SINK_BIN       the sink-run binary (default: build/cuda/sink-run where it is built and
#                  the job's node has a GPU, else build/release/sink-run; tools/detect_gpu.sh)
#   SINK_LAUNCHER  srun | mpirun (default: srun when it offers --mpi=pmix, else mpirun)
#   SINK_SRUN_MPI  the srun --mpi plugin (default pmix)
#   SINK_RESUME    auto (default): add --resume when OUT/.partial/manifest.json exists and
#                  no results.h5 newer than it does (the run is incomplete), so a requeued
#                  or resubmitted job continues where it stopped;
#                  0: never (sink-run then starts over and clears OUT/.partial); 1: always
#   SINK_THREADS   intra-op threads per rank (default: the job's --cpus-per-task, at
#                  most this node's CPUs divided by its tasks); ignored when --threads is given
#   SINK_PYTHON    a Python with PyYAML, to read `out` and the runs of a sweep
#                  (default .venv/bin/python, else python3)
#
# Paths inside a config are relative to the directory the job runs in, which is
# the directory sbatch was called from: submit from the repository root.

sink_log() { printf '[sink %s] %s\n' "$(date '+%F %T')" "$*" >&2; }
sink_die() { sink_log "error: $*"; exit 2; }

sink_python() {
  local py=${SINK_PYTHON:-}
  if [ -z "$py" ]; then
    if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
  fi
  "$py" -c 'import yaml' 2>/dev/null || sink_die "$py has no PyYAML (set SINK_PYTHON to a Python that has it, e.g. the repository's .venv/bin/python)"
  printf '%s' "$py"
}

# The Python helper (sink_yaml CMD ...): reads a config the way sink-run does closely enough to
# find `out` (after --set overrides) and, for a sweep, one run.
#   out CONFIG [sink-run args...]             -> prints OUT
#   count CONFIG [sink-run args...]           -> prints the number of runs (1 for a run config)
#   select CONFIG I [sink-run args...]        -> prints NUL-separated sink-run args that
#        make the sweep run only its run I, into <sweep out>/<run name>: --set 'runs=[<run I>]'
#        and --set out=...; the given --set out / runs / runs.* are folded into those two
#        (applied here), all other arguments pass through unchanged
#   has_intervention CONFIG [args...]         -> exit 0 if any run has an intervention
SINK_YAML_TOOL='
import json, re, sys, yaml

class Loader(yaml.SafeLoader):
    pass
# YAML 1.2 booleans only (sink refuses yes/no/on/off), no timestamps: keep them strings.
Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

def die(msg):
    sys.stderr.write(msg + "\n"); sys.exit(2)

def sets(args):
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--set" and i + 1 < len(args):
            out.append((i, args[i + 1])); i += 2; continue
        if a.startswith("--set="):
            out.append((i, a[len("--set="):]))
        i += 1
    return out

def apply(cfg, spec):
    key, _, val = spec.partition("=")
    if not key or "=" not in spec:
        die(f"--set {spec!r}: expected KEY=VALUE")
    value = yaml.load(val, Loader=Loader) if val else None
    parts = key.split(".")
    cur = cfg
    for j, p in enumerate(parts):
        last = j + 1 == len(parts)
        if isinstance(cur, list):
            if not p.isdigit() or int(p) >= len(cur):
                die(f"--set {key}: no entry {p!r} in a list of {len(cur)}")
            p = int(p)
        elif isinstance(cur, dict):
            if not last and cur.get(p) is None: cur[p] = {}
        else:
            die(f"--set {key}: {p!r} is not in a map")
        if last: cur[p] = value
        else: cur = cur[p]

def run_name(run):
    if run.get("name"): return str(run["name"])
    model = str(run.get("model") or "")
    random = model.startswith("random:")  # as sink-run names random:SHAPE/config.json: SHAPE_random
    if random: model = re.sub(r"config\.json$", "", model[len("random:"):])
    model = model.rstrip("/")
    if random and model.split("/")[-1]: return re.sub(r"[^a-z0-9_.-]", "_", model.split("/")[-1].lower()) + "_random"
    return re.sub(r"[^a-z0-9_.-]", "_", model.split("/")[-1].lower()) or "run"

cmd, path, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    with open(path) as f: cfg = yaml.load(f, Loader=Loader)
except (OSError, yaml.YAMLError) as e:
    die(f"{path}: {e}")
if not isinstance(cfg, dict): die(f"{path}: expected a map of keys at the top level")
if cmd == "select":
    index, rest = int(rest[0]), rest[1:]
for _, s in sets(rest): apply(cfg, s)
runs = cfg.get("runs") if isinstance(cfg.get("runs"), list) else None
defaults = cfg.get("defaults") if isinstance(cfg.get("defaults"), dict) else {}
merged = [dict(defaults, **r) if isinstance(r, dict) else {} for r in runs] if runs is not None else [cfg]

if cmd == "out":
    print(cfg.get("out") or "")
elif cmd == "count":
    print(len(merged))
elif cmd == "has_intervention":
    sys.exit(0 if any(m.get("intervention") for m in merged) else 1)
elif cmd == "select":
    if not cfg.get("out"): die(f"{path}: key out: required")
    if runs is None and index != 0: die(f"{path}: a run config, not a sweep: only array index 0 exists")
    if runs is not None and not 0 <= index < len(runs):
        die(f"{path}: has {len(runs)} runs (array indices 0-{len(runs) - 1}); there is no run {index}")
    out = str(cfg["out"]).rstrip("/") + "/" + run_name(merged[index])
    # all other arguments pass through; --set out / runs* are folded into the selected run and out
    args, i = [], 0
    while i < len(rest):
        a = rest[i]
        if a == "--set" and i + 1 < len(rest) or a.startswith("--set="):
            s = rest[i + 1] if a == "--set" else a[len("--set="):]
            i += 2 if a == "--set" else 1
            key = s.partition("=")[0]
            if key == "out" or (runs is not None and (key == "runs" or key.startswith("runs."))):
                continue
            args += ["--set", s]
            continue
        args.append(a); i += 1
    if runs is not None:
        # the run as loaded (anchors and merge keys expanded, --set applied), as the only run
        flow = yaml.safe_dump([runs[index]], default_flow_style=True, width=1 << 30, sort_keys=False).strip()
        args += ["--set", "runs=" + flow]
    args += ["--set", "out=" + json.dumps(out)]
    sys.stdout.write("\0".join(args) + "\0")
else:
    die("unknown command " + cmd)
'

# sink_yaml CMD CONFIG ARGS... : runs the helper above
sink_yaml() {
  local py
  py=$(sink_python) || exit 2
  "$py" -c "$SINK_YAML_TOOL" "$@"
}

# sink_launch CONFIG [sink-run args...]: resume detection, threads, launcher; then exec.
sink_launch() {
  local config=$1
  shift
  local bin=${SINK_BIN:-build/release/sink-run}
  if [ -z "${SINK_BIN:-}" ] && [ -f tools/detect_gpu.sh ]; then
    # shellcheck source=../tools/detect_gpu.sh
    source tools/detect_gpu.sh
    bin=$(sink_pick_bin)
  fi
  [ -x "$bin" ] || sink_die "sink-run not found at '$bin' (cwd $(pwd)); submit from the repository root (bash tools/setup.sh build) or set SINK_BIN"
  [ -f "$config" ] || sink_die "config '$config' not found (cwd $(pwd)); paths are relative to the directory sbatch was called from"

  # Progress stays on: sink-run writes a line every 10 % (or --progress-seconds) when stderr is a log file.
  local args=("$@") a have_threads=0 have_resume=0
  for a in "${args[@]}"; do
    case "$a" in
      --threads | --threads=*) have_threads=1 ;;
      --resume) have_resume=1 ;;
    esac
  done

  # resume a requeued / resubmitted job
  local out
  out=$(sink_yaml out "$config" "${args[@]}") || sink_die "cannot read 'out' from $config"
  case "${SINK_RESUME:-auto}" in
    auto)
      # Only an incomplete run: a results.h5 newer than the manifest finished it (--keep-partial).
      if [ "$have_resume" -eq 0 ] && [ -n "$out" ] && [ -f "$out/.partial/manifest.json" ] &&
        ! [ "$out/results.h5" -nt "$out/.partial/manifest.json" ]; then
        sink_log "found $out/.partial: continuing with --resume (SINK_RESUME=0 to start over)"
        args+=(--resume)
      fi ;;
    1 | yes | true) [ "$have_resume" -eq 1 ] || args+=(--resume) ;;
    0 | no | false) ;;
    *) sink_die "SINK_RESUME must be auto, 1 or 0, not '${SINK_RESUME}'" ;;
  esac

  # threads per rank: the job's CPUs per task, at most this node's CPUs / its tasks
  if [ "$have_threads" -eq 0 ]; then
    local threads=${SINK_THREADS:-}
    if [ -z "$threads" ]; then
      local per_node=${SLURM_NTASKS_PER_NODE:-${SLURM_TASKS_PER_NODE:-1}}
      per_node=${per_node%%(*}; per_node=${per_node%%,*}
      [[ "$per_node" =~ ^[0-9]+$ ]] && [ "$per_node" -gt 0 ] || per_node=1
      local cap=$(( $(nproc) / per_node ))
      [ "$cap" -ge 1 ] || cap=1
      threads=${SLURM_CPUS_PER_TASK:-$cap}
      [ "$threads" -le "$cap" ] || threads=$cap
    fi
    args+=(--threads "$threads")
    export OMP_NUM_THREADS=$threads
  fi

  local ntasks=${SLURM_NTASKS:-1}
  local launcher=${SINK_LAUNCHER:-}
  local mpi=${SINK_SRUN_MPI:-pmix}
  if [ -z "$launcher" ]; then
    if command -v srun >/dev/null 2>&1 && srun --mpi=list 2>&1 | grep -qw "$mpi"; then
      launcher=srun
    else
      launcher=mpirun
      sink_log "srun offers no --mpi=$mpi here: launching with mpirun"
    fi
  fi
  local cmd
  case "$launcher" in
    srun)
      cmd=(srun --mpi="$mpi" --kill-on-bad-exit=1)
      # Slurm 22.05+ srun does not take --cpus-per-task from the job: pass it on, or each rank gets one CPU
      [ -z "${SLURM_CPUS_PER_TASK:-}" ] || cmd+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
      cmd+=("$bin" "$config" "${args[@]}") ;;
    mpirun)
      cmd=(mpirun -n "$ntasks")
      [ "$(id -u)" -ne 0 ] || cmd+=(--allow-run-as-root)
      cmd+=(--oversubscribe "$bin" "$config" "${args[@]}") ;;
    *) sink_die "SINK_LAUNCHER must be srun or mpirun, not '$launcher'" ;;
  esac

  sink_log "job ${SLURM_JOB_ID:-none}${SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID)} on ${SLURM_JOB_NODELIST:-$(hostname)}: $ntasks ranks, out $out"
  sink_log "running: $(printf "%q " "${cmd[@]}")"
  local rc=0
  "${cmd[@]}" || rc=$?
  if [ "$rc" -eq 0 ]; then
    sink_log "done: $out/results.h5"
  else
    sink_log "sink-run failed with status $rc"
  fi
  return "$rc"
}
