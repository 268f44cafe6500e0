#!/bin/sh
# PID 1 of a test guest. Sets up the system from the kernel command line
# (tandem.ip=CIDR, tandem.name=HOSTNAME), then serves jobs on the second
# serial port (ttyS1) until the guest is killed. The console (ttyS0) only
# carries kernel messages, so job output never mixes with them.
#
# Job protocol (the host's side is src/agent.rs):
#   host  -> guest: "TAG TIMEOUT_S LEN\n" then LEN bytes of shell script
#   guest -> host:  "@@TAG STATUS OUT_LEN ERR_LEN\n" then stdout, stderr
# One job at a time; a job that outlives TIMEOUT_S is killed (status 137).
/bin/busybox --install -s /bin
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /mnt /run
tandem-load boot || echo "tandem-init: boot modules failed" >/dev/console
ip link set lo up
for word in $(cat /proc/cmdline); do
    case "$word" in
    tandem.ip=*) ip addr add "${word#tandem.ip=}" dev eth0 ;;
    tandem.name=*) hostname "${word#tandem.name=}" ;;
    esac
done
ip link set eth0 up
# The portmapper and status monitor the kernel's lock manager needs
# (mounts without nolock); guest/rpc_stub.c says what it serves.
tandem-rpc </dev/null >/dev/console 2>&1 &
# Boot stays quiet; from here on the NFS client's notices ("server not
# responding", "OK") reach the console log, for whoever debugs a test.
dmesg -n 6

stty -F /dev/ttyS1 raw -echo
exec 3<>/dev/ttyS1
echo "@@ready $(cut -d' ' -f1 /proc/uptime)" >&3
while read -r tag timeout_s len <&3; do
    head -c "$len" <&3 >/tmp/job.sh
    timeout -s KILL "$timeout_s" sh /tmp/job.sh </dev/null >/tmp/job.out 2>/tmp/job.err
    status=$?
    printf '@@%s %s %s %s\n' "$tag" "$status" "$(wc -c </tmp/job.out)" "$(wc -c </tmp/job.err)" >&3
    cat /tmp/job.out /tmp/job.err >&3
done
echo "tandem-init: job channel closed" >/dev/console
poweroff -f
