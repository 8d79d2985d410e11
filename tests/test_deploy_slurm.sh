#!/usr/bin/env bash
# deploy/slurm/dsinfer.sbatch on a real Slurm: this test starts munged, slurmctld and slurmd on
# this host from a generated configuration in a private temporary directory (its own key, socket,
# state, spool, logs and free loopback ports), runs a trivial job, then the batch script with the
# fixture model: one generation from --prompt-ids under each launcher (srun with PMIx, mpirun
# inside the allocation; tokens must equal the HF reference), the same on two Slurm nodes, and,
# where dsinfer-cluster has --listen, the API: one chat request, then scancel, after which every
# rank must have exited 0.
# The node is this host with its real CPU count; a second slurmd under another node name (the
# same host again, partition "pair") stands in for a second server.
# It stops what it started, also on failure, and checks that no process of it is left.
# Needs root and Debian's slurm-wlm and munge (scripts/setup.sh); under CI it must run.
set -uo pipefail
export PATH=$PATH:/usr/sbin:/sbin

FIX=${DSINFER_FIXTURES:-../shared/fixtures}/tiny-v3
SBATCH_SCRIPT=${DSINFER_SOURCE:-$(dirname "$0")/..}/deploy/slurm/dsinfer.sbatch

# Under CI this test must run: what would skip it elsewhere fails it there.
cannot() {
    if [ "${CI:-}" = true ]; then
        echo "ERROR: $*"
        exit 1
    fi
    echo "*** SKIPPED: $* ***"
    exit 77
}

[ -d "$FIX" ] || cannot "fixture $FIX missing"
[ "$(id -u)" -eq 0 ] || cannot "slurmd must run as root to start jobs (this test runs as $(id -un))"
for c in munged munge slurmctld slurmd sbatch squeue scancel sinfo scontrol srun mpirun curl \
    python3; do
    command -v "$c" >/dev/null || cannot "$c missing (scripts/setup.sh installs slurm-wlm, munge)"
done
command -v dsinfer-cluster >/dev/null || cannot "dsinfer-cluster not on PATH (ctest puts the build's there)"

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# The private directory. Every process of this test's Slurm (daemons, job steps, ranks) carries
# TAG in its environment, which is how the end of the test finds what is left of it.
D=$(mktemp -d "${TMPDIR:-/tmp}/dsinfer-slurm-XXXXXX")
chmod 755 "$D" # munged wants every directory above its socket open to all
TAG="DSINFER_SLURM_TEST=$D"
HOST=$(hostname -s)
HOST2=$HOST-b
mkdir -p "$D/munge" "$D/key" "$D/state" "$D/log" "$D/jobs" "$D/bin" \
    "$D/spool/$HOST" "$D/spool/$HOST2" "$D/tmp/$HOST" "$D/tmp/$HOST2"
chmod 700 "$D/key"

free_ports() { python3 "$(dirname "$0")/free_ports.py" "$1"; }
read -r CTLD_PORT SLURMD_PORT SLURMD2_PORT API_PORT < <(free_ports 4)
NODE_CPUS=$(nproc)

export SLURM_CONF=$D/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=dsinfer-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
AuthInfo=socket=$D/munge/socket
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
TmpFS=$D/tmp/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
ProctrackType=proctrack/pgid
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=15
JobCompType=jobcomp/filetxt
JobCompLoc=$D/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST NodeAddr=127.0.0.1 Port=$SLURMD_PORT CPUs=$NODE_CPUS State=UNKNOWN
NodeName=$HOST2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$SLURMD2_PORT CPUs=$NODE_CPUS State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=pair Nodes=$HOST,$HOST2 MaxTime=INFINITE State=UP
EOF

# The processes of this test's Slurm: those whose environment holds TAG.
ours() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF "$TAG" && echo "${p#/proc/}"
    done
}

wait_gone() { # PID SECONDS
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.2
    done
    return 1
}

stopped=
stop_slurm() {
    [ -n "$stopped" ] && return
    stopped=1
    local j f pid left
    for j in $(squeue -h -o %i 2>/dev/null); do scancel "$j"; done
    for ((i = 0; i < 60; i++)); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.5
    done
    for f in "slurmd-$HOST" "slurmd-$HOST2" slurmctld munge/munged; do
        [ -s "$D/$f.pid" ] || continue
        pid=$(cat "$D/$f.pid")
        kill -TERM "$pid" 2>/dev/null
        wait_gone "$pid" 20 || { echo "$f ($pid) ignored SIGTERM"; kill -KILL "$pid" 2>/dev/null; }
    done
    sleep 0.5
    left=$(ours)
    if [ -n "$left" ]; then
        bad "processes left: $(for pid in $left; do tr '\0' ' ' <"/proc/$pid/cmdline"; echo; done)"
        for pid in $left; do kill -KILL "$pid" 2>/dev/null; done
    else
        ok "no munge, slurm or dsinfer process left"
    fi
}
cleanup() {
    stop_slurm
    if [ $fail -ne 0 ]; then
        for f in "$D"/log/*.log "$D"/munge/munged.log; do
            [ -f "$f" ] && { echo "--- $f (end)"; tail -15 "$f"; }
        done
    fi
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# munge with its own key and socket, then the two Slurm daemons.
dd if=/dev/urandom of="$D/key/munge.key" bs=1024 count=1 status=none
chmod 400 "$D/key/munge.key"
env "$TAG" munged --key-file="$D/key/munge.key" --socket="$D/munge/socket" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
    --seed-file="$D/munge/munged.seed" ||
    cannot "munged did not start: $(tail -1 "$D/munge/munged.log" 2>/dev/null)"
munge -S "$D/munge/socket" -n | unmunge -S "$D/munge/socket" >/dev/null ||
    cannot "munge cannot encode and decode a credential with its own key"
env "$TAG" slurmctld -f "$SLURM_CONF" || cannot "slurmctld did not start: $(tail -3 "$D/log/slurmctld.log")"
for n in "$HOST" "$HOST2"; do
    env "$TAG" slurmd -f "$SLURM_CONF" -N "$n" ||
        cannot "slurmd of node $n did not start: $(tail -3 "$D/log/slurmd-$n.log")"
done
state=
for ((i = 0; i < 60; i++)); do
    state=$(sinfo -h -N -o %T 2>/dev/null | sort -u | tr '\n' ' ')
    [ "$state" = "idle " ] && break
    sleep 0.5
done
[ "$state" = "idle " ] || cannot "the nodes did not become idle in 30 s (states: $state): $(tail -3 "$D/log/slurmd-$HOST.log")"
ok "munged, slurmctld and 2 slurmd up (ports $CTLD_PORT, $SLURMD_PORT, $SLURMD2_PORT), nodes $HOST and $HOST2 idle"
# The check for left-over processes at the end must see the daemons now.
seen=$(ours | tr '\n' ' ')
for f in munge/munged slurmctld "slurmd-$HOST" "slurmd-$HOST2"; do
    [[ " $seen" == *" $(cat "$D/$f.pid") "* ]] || bad "the process scan misses ${f#*/} (saw: $seen)"
done

# Waits for job $1 to leave the queue (up to $2 seconds); 0 when it did.
wait_job() {
    local i
    for ((i = 0; i < $2 * 2; i++)); do
        [ -z "$(squeue -h -j "$1" -o %T 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    return 1
}
# "STATE EXITCODE" of a finished job, from the job completion log.
job_end() {
    grep "^JobId=$1 " "$D/jobcomp.txt" 2>/dev/null |
        sed -n 's/.*JobState=\([A-Z_]*\) .* ExitCode=\([0-9:]*\).*/\1 \2/p'
}
# The jobs run dsinfer-cluster through a link in D, so that their command lines differ from the
# build's dsinfer-cluster, which test_cluster_mpi looks for (and kills) by its path.
ln -s "$(command -v dsinfer-cluster)" "$D/bin/dsinfer-cluster"
submit() { # sbatch arguments...; prints the job id (the job's temporary files stay in D)
    env "$TAG" TMPDIR="$D/tmp" PATH="$D/bin:$PATH" sbatch --parsable --chdir="$D/jobs" --output="$D/jobs/%j.out" "$@"
}

# 1. The harness: a trivial job.
j=$(submit --wrap hostname)
if [ -n "$j" ] && wait_job "$j" 30 && [ "$(job_end "$j")" = "COMPLETED 0:0" ] &&
    [ "$(cat "$D/jobs/$j.out")" = "$(hostname)" ]; then
    ok "sbatch --wrap hostname completed"
else
    bad "trivial job '$j': $(job_end "$j"), output: $(cat "$D/jobs/$j.out" 2>/dev/null)"
fi

# 2. One generation from prompt ids under each launcher: 2 node ranks (one per "NUMA domain" of
# this 2-CPU host) and the coordinator, whose tokens must equal the HF reference.
read -r PROMPT WANT < <(python3 - "$FIX/reference.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]; hdr = json.loads(raw[8:8+n]); base = 8 + n
def ints(name):
    a, b = hdr[name]['data_offsets']
    return list(struct.unpack('<%di' % ((b - a) // 4), raw[base+a:base+b]))
print(','.join(map(str, ints('p3.tokens'))), ','.join(map(str, ints('p3.gen.tokens'))))
PY
)
JOB_OPTS=(--nodes=1 --ntasks-per-node=2 --cpus-per-task=1)
for launcher in srun mpirun; do
    j=$(DSINFER_MODEL="$FIX" DSINFER_PROMPT_IDS="$PROMPT" DSINFER_MAX_TOKENS=16 DSINFER_STAGES=2 \
        DSINFER_LAUNCHER=$launcher submit "${JOB_OPTS[@]}" "$SBATCH_SCRIPT")
    out=$D/jobs/$j.out
    if [ -n "$j" ] && wait_job "$j" 90 && [ "$(job_end "$j")" = "COMPLETED 0:0" ] &&
        grep -qxF "$WANT" "$out" && grep -q '^dsinfer: all 3 ranks exited cleanly$' "$out"; then
        ok "$launcher: 3 ranks generated the reference tokens and exited 0"
    else
        bad "$launcher job '$j': $(job_end "$j"), want $WANT; output:"
        tail -20 "$out" 2>/dev/null
    fi
done

# The same on two Slurm nodes (2 node ranks each): rank 0 and two node ranks on the first, two
# on the second. They are one host: Open MPI's shared-memory transport would take the two nodes'
# ranks for strangers and name its segments alike, so MPI itself talks over TCP here.
j=$(OMPI_MCA_btl=self,tcp DSINFER_MODEL="$FIX" DSINFER_PROMPT_IDS="$PROMPT" DSINFER_MAX_TOKENS=16 \
    DSINFER_STAGES=2 DSINFER_LAUNCHER=srun submit --partition=pair --nodes=2 --ntasks-per-node=2 \
    --cpus-per-task=1 "$SBATCH_SCRIPT")
out=$D/jobs/$j.out
if [ -n "$j" ] && wait_job "$j" 90 && [ "$(job_end "$j")" = "COMPLETED 0:0" ] &&
    grep -qxF "$WANT" "$out" && grep -q '^dsinfer: all 5 ranks exited cleanly$' "$out" &&
    grep -qxF "dsinfer: rank 0 (the coordinator) on $HOST; node ranks on $HOST x2, $HOST2 x2" "$out"; then
    ok "two nodes: rank 0 and 2 node ranks on $HOST, 2 on $HOST2 generated the reference tokens"
else
    bad "two-node job '$j': $(job_end "$j"), want $WANT; output:"
    tail -20 "$out" 2>/dev/null
fi

# 3. Serving: the API on the first node until scancel. scancel sends SIGTERM to every rank at
# once: node ranks drain while rank 0 shuts the cluster down. With two stages over the two node
# ranks no drain can be planned around, so each node simply gets the SHUTDOWN; with one stage
# the drains start live switches that race the shutdown, and a node rank can still abort in its
# control connection's close (node/daemon, not this script).
help=$(dsinfer-cluster --help 2>&1)
if [[ $help != *--listen* ]]; then
    echo "*** serving part SKIPPED: this dsinfer-cluster has no --listen ***"
else
    echo "sk-slurm-test-$RANDOM$RANDOM" >"$D/api-key"
    chmod 600 "$D/api-key"
    KEY=$(cat "$D/api-key")
    j=$(DSINFER_MODEL="$FIX" DSINFER_LISTEN=127.0.0.1:$API_PORT \
        DSINFER_API_KEY_FILE="$D/api-key" DSINFER_STAGES=2 submit "${JOB_OPTS[@]}" "$SBATCH_SCRIPT")
    out=$D/jobs/$j.out
    ready=
    for ((i = 0; i < 120; i++)); do
        grep -q "^dsinfer: API ready at http://.*:$API_PORT/v1$" "$out" 2>/dev/null && { ready=1; break; }
        [ -z "$(squeue -h -j "$j" -o %T 2>/dev/null)" ] && break
        sleep 0.5
    done
    if [ -n "$ready" ]; then
        ok "the job says where the API is: $(grep '^dsinfer: API ready' "$out")"
        base=http://127.0.0.1:$API_PORT/v1
        model=$(curl -s --max-time 10 -H "Authorization: Bearer $KEY" "$base/models" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])' 2>/dev/null)
        code=$(curl -s --max-time 60 -o "$D/chat.json" -w '%{http_code}' \
            -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
            -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":8}" \
            "$base/chat/completions")
        if [ "$code" = 200 ] && python3 - "$D/chat.json" <<'PY'; then
import json, sys
r = json.load(open(sys.argv[1]))
c = r["choices"][0]
assert c["message"]["role"] == "assistant" and isinstance(c["message"]["content"], str)
assert c["finish_reason"] in ("stop", "length")
PY
            ok "chat request to model '$model': 200 with a choice"
        else
            bad "chat request to model '$model': HTTP $code: $(head -c 300 "$D/chat.json" 2>/dev/null)"
        fi
    else
        bad "the API did not come up in 60 s; job output:"
        tail -20 "$out" 2>/dev/null
    fi
    scancel "$j"
    if wait_job "$j" 40 && [ "$(job_end "$j" | cut -d' ' -f1)" = CANCELLED ] &&
        grep -q '^dsinfer: all 3 ranks exited cleanly after the stop request$' "$out"; then
        ok "scancel: the job ended and all 3 ranks exited 0"
    else
        bad "after scancel, job '$j': $(job_end "$j"); output:"
        tail -20 "$out" 2>/dev/null
    fi
fi

stop_slurm
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
