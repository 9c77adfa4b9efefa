#!/bin/bash
# The package and its service under the real systemd, in the Debian VM of `cargo xtask
# systemd-test` (started by pfnaudit-systemd-test.service). As a user would: install the .deb,
# verify the unit, `pfn-auditor doctor`, declare the driver's holder in /etc/pfn-auditor/policy.toml,
# `systemctl enable --now pfn-auditor`, load the driver (installed under /lib/modules, as
# `make modules_install` does: the service must see its debug info there to give the holder's
# file:line) and run its misuse (as an unprivileged user), read the findings in
# /var/log/pfn-auditor, `systemctl reload` (SIGHUP: the file moved away is replaced), stop, start
# again (the previous run's file rotated to .1), remove and purge, and compare the file system's
# paths with those before the install.
#
# Each step is a line `ok <step>` or `FAIL <step>: <why>` in the file `steps`; files go to the host
# over the second serial port, framed as in tests/vm/guest/init.sh (`PFNAUDIT-BEGIN <name> <label>
# status=<status>` … `PFNAUDIT-END <name> <label>`), and the host (xtask/src/systemd_test.rs)
# judges them, the scenario's findings as scenarios.toml expects them.
#
# Arguments: the scenario's name, then the scenario program's arguments.
set -u
NAME=$1
shift
T=/pfnaudit-test
LOG=/var/log/pfn-auditor
NDJSON=$LOG/pfn-auditor.ndjson
OUT=/root/pfnaudit-out
mkdir -p $OUT
stty -F /dev/ttyS1 raw -echo

say() { echo "PFNAUDIT-$*" > /dev/console; }
send() { # label status file
    {
        echo "PFNAUDIT-BEGIN $NAME $1 status=$2"
        [ -f "$3" ] && cat "$3"
        echo
        echo "PFNAUDIT-END $NAME $1"
    } > /dev/ttyS1
}
ok() { echo "ok $1" >> $OUT/steps; say "STEP ok $1"; }
fail() { echo "FAIL $1: $2" >> $OUT/steps; say "STEP FAIL $1: $2"; }
# Runs a command as a step; its output goes to the file `log`.
step() { # name command...
    local name=$1
    shift
    echo "== $name: $*" >> $OUT/log
    if "$@" >> $OUT/log 2>&1; then ok "$name"; else fail "$name" "exit $?"; fi
}
# Waits up to $2 seconds for a line matching $3 in file $4.
wait_for() { # step seconds pattern file
    local i=0
    while ! grep -qE "$3" "$4" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -ge "$2" ]; then
            fail "$1" "no line matching $3 in $4 within $2 s"
            return 1
        fi
        sleep 1
    done
    ok "$1"
}
# Every path of the root file system, but those only the package manager's own bookkeeping, the
# journal and this test change.
paths() {
    find / -xdev \( -path /pfnaudit-test -o -path /root/pfnaudit-out -o -path /var/log/journal -o -path /var/lib/dpkg \
        -o -path /var/log/dpkg.log -o -path /var/cache/debconf -o -path /var/cache/ldconfig -o -path /tmp -o -path /var/tmp \) \
        -prune -o -print | sort
}
say "SYSTEMD-TEST $NAME: systemd $(systemctl --version | head -1)"

# The driver, installed as `make modules_install` would (the developer's, not the package's: before
# the path list). The root has no kmod, so modules.dep gets its lines here as depmod writes them.
EXTRA=/lib/modules/$(uname -r)/extra
mkdir -p $EXTRA
for m in $(cat $T/modules/order); do
    cp "$T/modules/$m.ko" $EXTRA/
    echo "extra/$m.ko:" >> /lib/modules/$(uname -r)/modules.dep
done

paths > $OUT/paths-before
step install dpkg -i $T/pfn-auditor.deb
# The unit as installed, against the real systemd of a Debian system.
systemd-analyze verify --man=no /lib/systemd/system/pfn-auditor.service > $OUT/verify 2>&1
if [ $? = 0 ] && ! grep -q pfn-auditor $OUT/verify; then ok verify-unit; else fail verify-unit "$(head -3 $OUT/verify)"; fi
step man-pages-and-completions test -s /usr/share/man/man1/pfn-auditor-run.1.gz -a -s /usr/share/bash-completion/completions/pfn-auditor
pfn-auditor doctor > $OUT/doctor 2>&1
doctor=$?
send doctor $doctor $OUT/doctor
[ $doctor = 0 ] && ok doctor || fail doctor "exit $doctor"

# The driver's holder, declared as docs/policy.md says (the test module's, tests/vm/policy.toml).
cp $T/policy.toml /etc/pfn-auditor/policy.toml
step enable systemctl enable --now pfn-auditor.service
wait_for service-attached 180 '"type": ?"status"' $NDJSON

# The driver comes after the service, as a developer loads it while the service runs.
for m in $(cat $T/modules/order); do
    step "insmod-$m" $T/busybox insmod "$EXTRA/$m.ko"
done
chmod 0666 /dev/pfnaudit
# An unprivileged user's process holds the pin (the service reads other users' processes).
setpriv --reuid=nobody --regid=nogroup --clear-groups $T/pfnaudit-scenario "$@" < /dev/null > $OUT/scenario 2>&1
scenario=$?
send scenario $scenario $OUT/scenario
wait_for finding-written 60 '"type": ?"finding"' $NDJSON

# Metrics on loopback (bash's /dev/tcp: the root has no HTTP client).
if exec 4<> /dev/tcp/127.0.0.1/9477; then
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&4
    timeout 10 cat <&4 > $OUT/metrics 2>/dev/null
    exec 4>&-
fi
send metrics 0 $OUT/metrics
pid=$(systemctl show -p MainPID --value pfn-auditor.service)
grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/$pid/status > $OUT/privileges
send privileges 0 $OUT/privileges
systemd-analyze security pfn-auditor.service > $OUT/security 2>&1
send security 0 $OUT/security

# `systemctl reload` after the file was moved away (what a collector's or logrotate's move
# does): the service reopens it at its path, a new file; its later records (the summary) go there.
mv $NDJSON $LOG/moved.ndjson
step reload systemctl reload pfn-auditor.service
i=0
while [ ! -e $NDJSON ] && [ $i -lt 30 ]; do
    sleep 1
    i=$((i + 1))
done
step reopened-on-reload test -e $NDJSON

step stop systemctl stop pfn-auditor.service
status=$(systemctl show -p ExecMainStatus --value pfn-auditor.service)
# The run's records: those before the reload, then those after.
cat $LOG/moved.ndjson $NDJSON > $OUT/ndjson
send ndjson "$status" $OUT/ndjson
journalctl -u pfn-auditor.service --no-pager -o cat > $OUT/journal 2>&1
send stderr "$status" $OUT/journal
step summary-after-reload grep -qE '"type": ?"summary"' $NDJSON

# A start rotates the file the previous run left (the unit's --output-max-mib/--output-keep): its
# records move to .1 whole, and the new run starts a new file.
cp $NDJSON $OUT/previous
step restart systemctl start pfn-auditor.service
wait_for restart-attached 180 '"type": ?"status"' $NDJSON
step previous-run-rotated cmp $OUT/previous $NDJSON.1
step restart-stop systemctl stop pfn-auditor.service
stat -c '%a %U %n' $LOG $LOG/* > $OUT/modes 2>&1
send modes 0 $OUT/modes

step remove dpkg -r pfn-auditor
step removed-binary test ! -e /usr/bin/pfn-auditor
step remove-keeps-policy test -e /etc/pfn-auditor/policy.toml
step purge dpkg -P pfn-auditor
# dpkg's database is left out of the path lists (it churns); it must have forgotten the package.
step dpkg-forgot-it test -z "$(ls /var/lib/dpkg/info/pfn-auditor.* 2>/dev/null)"
paths > $OUT/paths-after
diff $OUT/paths-before $OUT/paths-after > $OUT/leftover
send leftover 0 $OUT/leftover
step nothing-left-behind test ! -s $OUT/leftover

send log 0 $OUT/log
send steps 0 $OUT/steps
say "DONE ok"
sync
systemctl poweroff --force --force
