#!/bin/sh
# PID 1 of the pfn-auditor test VM (busybox sh). Runs the scenarios listed in /plan and sends each
# result file to the host over the second serial port (ttyS1), framed as
#   PFNAUDIT-BEGIN <scenario> <file> status=<exit status>
#   ...file contents...
#   PFNAUDIT-END <scenario> <file>
# The console (ttyS0) carries progress and the final PFNAUDIT-DONE line the host waits for.
#
# /plan has one scenario a line: `<name> <mode> <program> <args...>` where program is
# pfnaudit-scenario (drives the test module) or pfnaudit-intree (Debian's own drivers: vfio-pci on
# QEMU's edu device, e1000, KVM), and mode is
#   run        auditor attached, scenario in the foreground
#   background auditor attached, scenario in the background until /tmp/scenario.ready; the auditor
#              is stopped first, then the scenario is killed (its pins stay held past the run)
#   gate       `pfn-auditor gate -- <program> args...` (CI use): its exit code, NDJSON, JUnit
#              and SARIF reports are sent back
#   gate-late  the same, but the modules are unloaded first and loaded by the gated command, as a
#              driver's test script does: the auditor starts before the driver is there
#   gate-full  `gate` with its NDJSON output on /dev/full (every write fails with ENOSPC): the
#              gate must stop, name the output and exit with its own code
#   gate-junit-full  `gate` with its JUnit report on /dev/full: the report written at the end
#              fails; the same verdict, naming the JUnit report
#   run-full   `run --output /dev/full --duration 30`: the same for the daemon (no program runs)
#   run-closed-pipe  `run --output - --duration 30` into a pipe whose reader has exited (EPIPE)
#   metrics    `run --metrics 0.0.0.0:9477` on the user network's NIC, the program run in a loop
#              until the host (Prometheus, xtask/src/prometheus.rs) is done scraping
#   bench      the scenario bare, under `run --probe-floor` and with the auditor attached, three
#              times each (timing, and each daemon's per-hook BPF run time from its summary)
#   check-X    the guest-side check `check_X` below (dashes as underscores): doctor with pieces
#              removed, signals, two instances, kill -9 and restart, a storm. Each sends what it
#              saw as files, and `facts` (key=value lines) for what only the guest can see.

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mkdir -p /tmp /out /run
echo "PFNAUDIT-INIT-STARTED $(uname -r)"

finish() {
    echo "PFNAUDIT-DONE $1"
    sync
    poweroff -f
}

# Raw mode: no \n -> \r\n translation of the files we send.
stty -F /dev/ttyS1 raw -echo 2>/dev/null

send() { # scenario file-label status path
    {
        echo "PFNAUDIT-BEGIN $1 $2 status=$3"
        [ -f "$4" ] && cat "$4"
        echo
        echo "PFNAUDIT-END $1 $2"
    } > /dev/ttyS1
}

for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" || { echo "PFNAUDIT-ERROR insmod $m failed"; finish modules-failed; }
done

# Debian's modules for the in-tree scenarios (vfio, vfio-pci, type1, kvm, kvm_amd and what they
# need; e1000 is left to the scenario program), then QEMU's edu device (1234:11e8) bound to vfio-pci.
for m in $(cat /modules/intree/boot); do
    insmod "/modules/intree/$m.ko" || { echo "PFNAUDIT-ERROR insmod $m (in-tree) failed"; finish modules-failed; }
done
for dev in /sys/bus/pci/devices/*; do
    [ "$(cat $dev/vendor)" = 0x1234 ] && [ "$(cat $dev/device)" = 0x11e8 ] || continue
    bdf=${dev##*/}
    echo vfio-pci > $dev/driver_override
    echo $bdf > /sys/bus/pci/drivers_probe
    [ -e $dev/driver ] && [ "$(basename $(readlink $dev/driver))" = vfio-pci ] ||
        { echo "PFNAUDIT-ERROR edu $bdf: not bound to vfio-pci"; finish vfio-failed; }
    echo "PFNAUDIT-VFIO edu $bdf bound to vfio-pci, iommu group $(basename $(readlink $dev/iommu_group))"
done
for card in /sys/class/drm/card*; do
    [ -e "$card" ] && echo "PFNAUDIT-DRM ${card##*/} -> $(readlink $card/device)"
done

# The gated command of gate-late scenarios: loads the modules, then runs the scenario program.
cat > /tmp/load-modules-and-run <<'EOF'
#!/bin/sh
for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" || { echo "insmod $m failed" >&2; exit 97; }
done
exec "$@"
EOF
chmod +x /tmp/load-modules-and-run

unload_modules() {
    reversed=""
    for m in $(cat /modules/order); do reversed="$m $reversed"; done
    for m in $reversed; do
        rmmod "$m" || { echo "PFNAUDIT-ERROR rmmod $m failed"; return 1; }
    done
}

POLICY=""
[ -f /policy.toml ] && POLICY="--policy /policy.toml"
# The test module as built (with debug info): holders get their file:line. Debian's modules there
# are stripped, so theirs fall back to func+off [module].
# doctor takes the policy only.
DOCTOR_POLICY=$POLICY
POLICY="$POLICY --module-debug-dir /modules"
# Where the test module was built on the host (its sources' root): SARIF gives the holder's file
# relative to it (%SRCROOT%), as for a CI job's checkout. A path without spaces (xtask's target dir).
SOURCE_ROOT=""
[ -s /modules/source-root ] && SOURCE_ROOT="--source-root $(cat /modules/source-root)"
HAVE_AUDITOR=0
[ -x /bin/pfn-auditor ] && HAVE_AUDITOR=1

# Starts the auditor for scenario $1 (extra args after it) and waits for its status record.
start_auditor() {
    local name=$1
    shift
    pfn-auditor run $POLICY --output "/out/$name.ndjson" "$@" < /dev/null 2> "/out/$name.stderr" &
    AUDITOR=$!
    i=0
    while ! grep -qE '"type": ?"status"' "/out/$name.ndjson" 2>/dev/null; do
        if ! kill -0 $AUDITOR 2>/dev/null; then
            echo "PFNAUDIT-ERROR $name: pfn-auditor exited before its status record"
            return 1
        fi
        i=$((i + 1))
        if [ $i -ge 60 ]; then
            echo "PFNAUDIT-ERROR $name: no status record from pfn-auditor within 60 s"
            return 1
        fi
        sleep 1
    done
}

# SIGINT drains and flushes; a stuck auditor is killed after 120 s (status 137 then).
stop_auditor() {
    kill -INT $AUDITOR 2>/dev/null
    wait_auditor
}

# Waits for $AUDITOR to exit (killed after 120 s); its status in AUDITOR_STATUS.
wait_auditor() {
    ( sleep 120; kill -KILL $AUDITOR 2>/dev/null ) &
    watchdog=$!
    wait $AUDITOR
    AUDITOR_STATUS=$?
    kill $watchdog 2>/dev/null
}

run_scenario() { # name mode program args...
    name=$1
    mode=$2
    shift 2
    echo "PFNAUDIT-SCENARIO $name ($mode): $*"
    AUDITOR_STATUS=none
    if [ $HAVE_AUDITOR = 1 ]; then
        if ! start_auditor "$name" --events; then
            kill -KILL $AUDITOR 2>/dev/null
            wait $AUDITOR
            AUDITOR_STATUS=not-ready
        fi
    fi
    if [ "$mode" = background ]; then
        "$@" < /dev/null > "/out/$name.scenario" 2>&1 &
        scenario=$!
        i=0
        while [ ! -e /tmp/scenario.ready ] && [ $i -lt 60 ] && kill -0 $scenario 2>/dev/null; do
            sleep 1
            i=$((i + 1))
        done
        [ -e /tmp/scenario.ready ] || echo "PFNAUDIT-ERROR $name: no /tmp/scenario.ready within 60 s"
        [ "$AUDITOR_STATUS" = none ] && [ $HAVE_AUDITOR = 1 ] && stop_auditor
        kill -KILL $scenario 2>/dev/null
        wait $scenario
        scenario_status=$?
        # Killed is how a background scenario ends; never getting ready is its failure.
        [ -e /tmp/scenario.ready ] || scenario_status=not-ready
        rm -f /tmp/scenario.ready
    else
        "$@" < /dev/null > "/out/$name.scenario" 2>&1
        scenario_status=$?
        [ "$AUDITOR_STATUS" = none ] && [ $HAVE_AUDITOR = 1 ] && stop_auditor
    fi
    echo "PFNAUDIT-SCENARIO-END $name scenario=$scenario_status auditor=$AUDITOR_STATUS"
    send "$name" scenario $scenario_status "/out/$name.scenario"
    if [ $HAVE_AUDITOR = 1 ]; then
        send "$name" ndjson "$AUDITOR_STATUS" "/out/$name.ndjson"
        send "$name" stderr "$AUDITOR_STATUS" "/out/$name.stderr"
    fi
}

# The CI gate as a user runs it: the scenario under `pfn-auditor gate`, reports written.
run_gate() { # name command args...
    name=$1
    shift
    echo "PFNAUDIT-SCENARIO $name (gate): $*"
    pfn-auditor gate $POLICY --output "${GATE_OUTPUT:-/out/$name.ndjson}" --junit "${GATE_JUNIT:-/out/$name.junit}" --sarif "/out/$name.sarif" \
        $SOURCE_ROOT -- "$@" < /dev/null > "/out/$name.scenario" 2> "/out/$name.stderr"
    status=$?
    echo "PFNAUDIT-SCENARIO-END $name gate=$status"
    # The tracefs kprobes the auditor armed must be gone once it exited.
    grep pfnaudit/ /sys/kernel/tracing/kprobe_events > "/out/$name.leftover" 2>/dev/null
    send "$name" scenario 0 "/out/$name.scenario"
    for label in ndjson stderr junit sarif leftover; do
        send "$name" $label $status "/out/$name.$label"
    done
}

# The daemon with an output that cannot be written: it must stop at once with its own exit code.
run_full() { # name
    name=$1
    echo "PFNAUDIT-SCENARIO $name (run, output /dev/full)"
    pfn-auditor run $POLICY --output /dev/full --duration 30 < /dev/null > "/out/$name.scenario" 2> "/out/$name.stderr"
    status=$?
    echo "PFNAUDIT-SCENARIO-END $name run=$status"
    send "$name" scenario 0 "/out/$name.scenario"
    send "$name" ndjson $status /dev/null
    send "$name" stderr $status "/out/$name.stderr"
}

# The daemon's NDJSON on stdout into a pipe whose reader (`true`) exits at once: the first record's
# write fails with EPIPE (Rust ignores SIGPIPE), so it must stop with its own exit code. The shell
# has no PIPESTATUS: the exit code goes through a file.
run_closed_pipe() { # name
    name=$1
    echo "PFNAUDIT-SCENARIO $name (run, output - into a closed pipe)"
    { pfn-auditor run $POLICY --output - --duration 30 2> "/out/$name.stderr"; echo $? > "/out/$name.status"; } < /dev/null | true
    status=$(cat "/out/$name.status")
    echo "PFNAUDIT-SCENARIO-END $name run=$status"
    send "$name" scenario 0 /dev/null
    send "$name" ndjson $status /dev/null
    send "$name" stderr $status "/out/$name.stderr"
}

# tracefs kprobe events of pfn-auditor, all of them or those of pid $1.
pfnaudit_events() {
    grep "pfnaudit/e${1}" /sys/kernel/tracing/kprobe_events 2>/dev/null
}

count_events() {
    pfnaudit_events "$1" | wc -l
}

# doctor --json as root, as nobody, without tracefs, with kprobes switched off (and `run` then).
check_doctor() { # name
    name=$1
    pfn-auditor doctor --json $DOCTOR_POLICY > "/out/$name.full" 2>> "/out/$name.stderr"
    send "$name" doctor-full $? "/out/$name.full"
    pfnaudit-scenario as-user 65534 pfn-auditor doctor --json > "/out/$name.nonroot" 2>> "/out/$name.stderr"
    send "$name" doctor-nonroot $? "/out/$name.nonroot"
    # tracefs is mounted twice: on its own, and automounted under debugfs.
    umount /sys/kernel/tracing
    umount -l /sys/kernel/debug
    echo "tracefs_mounts_while_removed=$(grep -c tracefs /proc/mounts)" > "/out/$name.facts"
    pfn-auditor doctor --json $DOCTOR_POLICY > "/out/$name.notracefs" 2>> "/out/$name.stderr"
    send "$name" doctor-notracefs $? "/out/$name.notracefs"
    mount -t debugfs debugfs /sys/kernel/debug
    mount -t tracefs tracefs /sys/kernel/tracing
    echo 0 > /sys/kernel/debug/kprobes/enabled
    echo "kprobes_enabled_while_off=$(cat /sys/kernel/debug/kprobes/enabled)" >> "/out/$name.facts"
    pfn-auditor doctor --json $DOCTOR_POLICY > "/out/$name.kprobesoff" 2>> "/out/$name.stderr"
    send "$name" doctor-kprobesoff $? "/out/$name.kprobesoff"
    pfn-auditor run $POLICY --duration 5 --output "/out/$name.ndjson" < /dev/null 2> "/out/$name.run-stderr"
    send "$name" run-kprobesoff $? "/out/$name.run-stderr"
    echo 1 > /sys/kernel/debug/kprobes/enabled
    send "$name" stderr 0 "/out/$name.stderr"
    send "$name" facts 0 "/out/$name.facts"
}

# SIGTERM while the probes are being attached: programs loaded (a bpf-prog descriptor), no status
# record yet. The run must still end with its status and summary, exit 0, nothing left behind.
check_sigterm_attach() { # name
    name=$1
    pfn-auditor run $POLICY --output "/out/$name.ndjson" < /dev/null 2> "/out/$name.stderr" &
    AUDITOR=$!
    during=no
    i=0
    while [ $i -lt 1200 ] && kill -0 $AUDITOR 2>/dev/null; do
        if ls -l /proc/$AUDITOR/fd 2>/dev/null | grep -q bpf-prog; then
            grep -qE '"type": ?"status"' "/out/$name.ndjson" || during=yes
            break
        fi
        sleep 0.05
        i=$((i + 1))
    done
    kill -TERM $AUDITOR
    wait_auditor
    {
        echo "signal_during_attach=$during"
        echo "leftover_events=$(count_events)"
    } > "/out/$name.facts"
    send "$name" ndjson $AUDITOR_STATUS "/out/$name.ndjson"
    send "$name" stderr $AUDITOR_STATUS "/out/$name.stderr"
    send "$name" facts 0 "/out/$name.facts"
}

# SIGTERM while the daemon drains a storm of records (the workload still running).
check_sigterm_drain() { # name program args...
    name=$1
    shift
    start_auditor "$name" || return
    "$@" < /dev/null > "/out/$name.scenario" 2>&1 &
    work=$!
    sleep 3
    running=no
    kill -0 $work 2>/dev/null && running=yes
    kill -TERM $AUDITOR
    wait_auditor
    kill -KILL $work 2>/dev/null
    wait $work
    {
        echo "workload_running_at_signal=$running"
        echo "leftover_events=$(count_events)"
    } > "/out/$name.facts"
    send "$name" ndjson $AUDITOR_STATUS "/out/$name.ndjson"
    send "$name" stderr $AUDITOR_STATUS "/out/$name.stderr"
    send "$name" facts 0 "/out/$name.facts"
}

# Two daemons at once: both see the scenario; the second stopping leaves the first's hooks (its
# tracefs events, its release hook) working, as the correct use after it shows.
check_second_instance() { # name program args...
    name=$1
    shift
    start_auditor "$name" --events || return
    first=$AUDITOR
    start_auditor "$name.second" --events || return
    second=$AUDITOR
    "$@" < /dev/null > "/out/$name.scenario" 2>&1
    scenario_status=$?
    first_events=$(count_events "${first}_")
    second_events=$(count_events "${second}_")
    stop_auditor
    second_status=$AUDITOR_STATUS
    first_events_after=$(count_events "${first}_")
    pfnaudit-scenario correct-use < /dev/null >> "/out/$name.scenario" 2>&1 || scenario_status=$?
    AUDITOR=$first
    stop_auditor
    {
        echo "first_events=$first_events"
        echo "second_events=$second_events"
        echo "first_events_after_second_stopped=$first_events_after"
        echo "leftover_events=$(count_events)"
    } > "/out/$name.facts"
    send "$name" scenario $scenario_status "/out/$name.scenario"
    send "$name" ndjson $AUDITOR_STATUS "/out/$name.ndjson"
    send "$name" stderr $AUDITOR_STATUS "/out/$name.stderr"
    send "$name" ndjson-second $second_status "/out/$name.second.ndjson"
    send "$name" stderr-second $second_status "/out/$name.second.stderr"
    send "$name" facts 0 "/out/$name.facts"
}

# Kernels before 5.14: a second daemon is refused (its kretprobes would corrupt the first's
# stacks), and doctor as root does not attach beside the first; the first sees the workload.
check_second_instance_refused() { # name program args...
    name=$1
    shift
    start_auditor "$name" --events || return
    pfn-auditor run $POLICY --duration 5 --output "/out/$name.second.ndjson" < /dev/null 2> "/out/$name.second.stderr"
    second_status=$?
    pfn-auditor doctor --json --sample-ms 0 $DOCTOR_POLICY > "/out/$name.doctor" 2> "/out/$name.doctor-stderr"
    doctor_status=$?
    "$@" < /dev/null > "/out/$name.scenario" 2>&1
    scenario_status=$?
    stop_auditor
    echo "leftover_events=$(count_events)" > "/out/$name.facts"
    send "$name" scenario $scenario_status "/out/$name.scenario"
    send "$name" ndjson $AUDITOR_STATUS "/out/$name.ndjson"
    send "$name" stderr $AUDITOR_STATUS "/out/$name.stderr"
    send "$name" stderr-second $second_status "/out/$name.second.stderr"
    send "$name" doctor $doctor_status "/out/$name.doctor"
    send "$name" facts 0 "/out/$name.facts"
}

# kill -9, then a new run: the killed run's tracefs events are removed at its start, the new run
# works, and nothing is left once it stopped (no tracefs event, no pinned map).
check_kill9_restart() { # name program args...
    name=$1
    shift
    start_auditor "$name.killed" || return
    killed=$AUDITOR
    before=$(count_events "${killed}_")
    kill -KILL $killed
    wait $killed
    after_kill=$(count_events "${killed}_")
    start_auditor "$name" --events || return
    after_restart=$(count_events "${killed}_")
    "$@" < /dev/null > "/out/$name.scenario" 2>&1
    scenario_status=$?
    stop_auditor
    {
        echo "killed_events_before=$before"
        echo "killed_events_after_kill=$after_kill"
        echo "killed_events_after_restart=$after_restart"
        echo "leftover_events=$(count_events)"
        echo "pinned=$(find /sys/fs/bpf -mindepth 1 | wc -l)"
    } > "/out/$name.facts"
    send "$name" scenario $scenario_status "/out/$name.scenario"
    send "$name" ndjson $AUDITOR_STATUS "/out/$name.ndjson"
    send "$name" stderr $AUDITOR_STATUS "/out/$name.stderr"
    send "$name" facts 0 "/out/$name.facts"
}

# The daemon's memory under a storm: VmRSS once attached and after the storm, and VmHWM (peak
# RSS, attaching included) polled each second until it exits. The program gets the auditor's pid as its last argument (it stops it for a while).
check_storm() { # name program args...
    name=$1
    shift
    start_auditor "$name" || return
    rss_attached=$(awk '/VmRSS/ { print $2 }' /proc/$AUDITOR/status)
    (
        while kill -0 $AUDITOR 2>/dev/null; do
            awk '/VmHWM/ { print $2 }' /proc/$AUDITOR/status > "/out/$name.hwm.new" 2>/dev/null &&
                [ -s "/out/$name.hwm.new" ] && mv "/out/$name.hwm.new" "/out/$name.hwm"
            sleep 1
        done
    ) &
    poller=$!
    "$@" $AUDITOR < /dev/null > "/out/$name.scenario" 2>&1
    scenario_status=$?
    kill -CONT $AUDITOR 2>/dev/null
    rss_end=$(awk '/VmRSS/ { print $2 }' /proc/$AUDITOR/status)
    stop_auditor
    wait $poller
    {
        echo "rss_attached_kib=$rss_attached"
        echo "rss_end_kib=$rss_end"
        echo "hwm_peak_kib=$(cat "/out/$name.hwm" 2>/dev/null)"
        echo "leftover_events=$(count_events)"
    } > "/out/$name.facts"
    send "$name" scenario $scenario_status "/out/$name.scenario"
    send "$name" ndjson $AUDITOR_STATUS "/out/$name.ndjson"
    send "$name" stderr $AUDITOR_STATUS "/out/$name.stderr"
    send "$name" facts 0 "/out/$name.facts"
}

# The daemon scraped by Prometheus on the host: QEMU forwards host ports to 10.0.2.15:9477 (the
# metrics) and :9478, which the host connects to when it is done. The program runs in a loop until
# then (or 240 s), so the counters move while they are scraped.
run_metrics() { # name program args...
    name=$1
    shift
    echo "PFNAUDIT-SCENARIO $name (metrics): $*"
    ifname=""
    for dev in /sys/class/net/*; do
        [ "$(basename "$(readlink $dev/device/driver)")" = virtio_net ] && ifname=${dev##*/}
    done
    [ -n "$ifname" ] && ip link set "$ifname" up && ip addr add 10.0.2.15/24 dev "$ifname" ||
        echo "PFNAUDIT-ERROR $name: no virtio NIC for the metrics network"
    scenario_status=0
    if start_auditor "$name" --events --metrics 0.0.0.0:9477; then
        nc -l -p 9478 < /dev/null > /dev/null 2>&1 &
        release=$!
        echo "PFNAUDIT-METRICS-READY $name"
        end=$(($(date +%s) + 240))
        while kill -0 $release 2>/dev/null && [ "$(date +%s)" -lt $end ]; do
            "$@" < /dev/null >> "/out/$name.scenario" 2>&1 || scenario_status=$?
        done
        kill $release 2>/dev/null
        stop_auditor
    else
        kill -KILL $AUDITOR 2>/dev/null
        AUDITOR_STATUS=not-ready
    fi
    echo "PFNAUDIT-SCENARIO-END $name scenario=$scenario_status auditor=$AUDITOR_STATUS"
    send "$name" scenario $scenario_status "/out/$name.scenario"
    send "$name" ndjson "$AUDITOR_STATUS" "/out/$name.ndjson"
    send "$name" stderr "$AUDITOR_STATUS" "/out/$name.stderr"
}

# Three runs each way, appended to one file per way: bare, under `pfn-auditor run --probe-floor`
# (empty programs on the same hooks: what the probes alone cost) and with the auditor attached.
run_bench() { # name program args...
    # Not $name: start_auditor sets it.
    bench=$1
    shift
    echo "PFNAUDIT-BENCH $bench: $*"
    # Every run gets the same address-space layout: where mappings land changes what mmap costs.
    echo 0 > /proc/sys/kernel/randomize_va_space
    bench_runs "$bench" bare "$@"
    [ $HAVE_AUDITOR = 1 ] || return 0
    for way in floor attached; do
        floor=""
        [ $way = floor ] && floor=--probe-floor
        if start_auditor "$bench-$way" $floor; then
            before=$(cpu_ticks $AUDITOR)
            bench_runs "$bench" $way "$@"
            # The daemon's share of the single vCPU during the runs.
            echo "cpu_ticks=$(($(cpu_ticks $AUDITOR) - before))" > "/out/$bench-$way.daemon"
            send "$bench" "$way-daemon" 0 "/out/$bench-$way.daemon"
            stop_auditor
            # The summary's per-hook totals (runs and ns of each hook's programs as the kernel
            # counts them): where the attached time goes. The array holds no nested brackets.
            sed -n 's/.*"type":"summary".*"hooks":\(\[[^]]*\]\).*/\1/p' "/out/$bench-$way.ndjson" > "/out/$bench-$way.hooks"
            send "$bench" "$way-hooks" "$AUDITOR_STATUS" "/out/$bench-$way.hooks"
        else
            kill -KILL $AUDITOR 2>/dev/null
            wait $AUDITOR
            AUDITOR_STATUS=not-ready
        fi
        send "$bench" "$way-stderr" "$AUDITOR_STATUS" "/out/$bench-$way.stderr"
    done
}

cpu_ticks() { # pid: user + system time of the process so far, in USER_HZ (100 on x86) ticks
    set -- $(cat /proc/$1/stat)
    echo $((${14} + ${15}))
}

bench_runs() { # bench way program args... (own variable names: sh variables are global)
    runs_of=$1
    runs_way=$2
    shift 2
    status=0
    for i in 1 2 3; do
        "$@" < /dev/null >> "/out/$runs_of.$runs_way" 2>&1 || status=$?
    done
    send "$runs_of" "$runs_way" $status "/out/$runs_of.$runs_way"
}

while read -r name mode args; do
    [ -z "$name" ] && continue
    case "$mode" in
        bench) run_bench "$name" $args ;;
        gate) [ $HAVE_AUDITOR = 1 ] && run_gate "$name" $args ;;
        gate-late) [ $HAVE_AUDITOR = 1 ] && unload_modules && run_gate "$name" /tmp/load-modules-and-run $args ;;
        gate-full) [ $HAVE_AUDITOR = 1 ] && GATE_OUTPUT=/dev/full && run_gate "$name" $args; GATE_OUTPUT= ;;
        gate-junit-full) [ $HAVE_AUDITOR = 1 ] && GATE_JUNIT=/dev/full && run_gate "$name" $args; GATE_JUNIT= ;;
        run-full) [ $HAVE_AUDITOR = 1 ] && run_full "$name" ;;
        run-closed-pipe) [ $HAVE_AUDITOR = 1 ] && run_closed_pipe "$name" ;;
        metrics) [ $HAVE_AUDITOR = 1 ] && run_metrics "$name" $args ;;
        check-*) [ $HAVE_AUDITOR = 1 ] && "check_$(echo "${mode#check-}" | tr - _)" "$name" $args ;;
        *) run_scenario "$name" "$mode" $args ;;
    esac
done < /plan

finish ok
