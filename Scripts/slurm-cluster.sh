# A private one-node Slurm cluster on this host (Debian's slurm-wlm + munge, started by hand, as
# root; config, keys, state and logs under $W, nothing written under /etc). Sourced by
# Scripts/slurm-e2e.sh and Benchmarks/calibrate-cluster.sh, which define `say` and `die` first.
#   slurm_install            installs slurm-wlm and munge (apt) if missing
#   slurm_start W PARTITION  starts munged, slurmctld and slurmd; exports SLURM_CONF; sets HOST, CPUS
#   slurm_stop               stops the daemons slurm_start started (also of an earlier run in $W)
#   wait_for_queue WHAT      waits (up to MAXWAIT seconds, default 900) until the queue is empty

slurm_install() {
    [ "$(id -u)" = 0 ] || die "run as root (slurmd launches the tasks; munged and the daemons are started by hand)"
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
        say "installing slurm-wlm and munge"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
}

slurm_stop() {
    for p in slurmd slurmctld munged; do
        [ -f "$W/$p.pid" ] && kill "$(cat "$W/$p.pid")" 2>/dev/null || true
    done
    sleep 1
    for p in slurmd slurmctld munged; do
        [ -f "$W/$p.pid" ] && kill -9 "$(cat "$W/$p.pid")" 2>/dev/null || true
    done
}

wait_for_queue() {
    for _ in $(seq "${MAXWAIT:-900}"); do
        [ -z "$(squeue -h -u root 2>/dev/null)" ] && return 0
        sleep 1
    done
    die "$1 still queued after ${MAXWAIT:-900} s: $(squeue -h)"
}

slurm_start() {
    W=$1
    local partition=$2
    HOST=$(hostname -s)
    CPUS=$(nproc)
    local mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    # Daemons of an earlier run that died with its shell.
    [ -d "$W" ] && slurm_stop
    rm -rf "$W"
    mkdir -p "$W"/{ctld,spool,munge,out}
    say "munged (private key and socket)"
    mungekey --create --keyfile="$W/munge/munge.key" --force
    chmod 600 "$W/munge/munge.key"
    munged --force --key-file="$W/munge/munge.key" --socket="$W/munge/munge.socket" \
           --pid-file="$W/munged.pid" --log-file="$W/munged.log" --seed-file="$W/munge/munge.seed"
    cat > "$W/slurm.conf" <<CONF
ClusterName=fireq-e2e
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$W/munge/munge.socket
CryptoType=crypto/munge
StateSaveLocation=$W/ctld
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName=$HOST CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=$partition Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$W/slurm.conf
    say "slurmctld and slurmd for node $HOST ($CPUS CPUs)"
    slurmctld -i
    slurmd
    local state=
    for _ in $(seq 60); do
        state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
        [ "$state" = idle ] && break
        sleep 1
    done
    [ "$state" = idle ] || { tail -20 "$W/slurmctld.log" "$W/slurmd.log"; die "node $HOST is '$state', not idle"; }
    say "cluster up: $(sinfo -h -o '%P %D %T %C')"
}
