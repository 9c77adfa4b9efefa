#!/bin/sh
# PID 1 of the initramfs that boots the Debian root of `cargo xtask systemd-test` (busybox sh):
# loads what mounting the root needs (/modules/order: virtio_pci, virtio_blk, crc32c, ext4 and their
# dependencies), mounts the root disk (/dev/vda, a copy-on-write snapshot of the cached image),
# copies this run's files (/payload: the .deb, the test module, the scenario program, the test
# script and its unit) to /pfnaudit-test in it, and hands over to systemd, which starts the
# test unit named on the kernel command line (systemd.unit=pfnaudit-systemd-test.service).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "PFNAUDIT-INIT-STARTED $(uname -r) (initramfs)"

fail() {
    echo "PFNAUDIT-DONE $1"
    poweroff -f
}

for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" || fail "insmod-$m-failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 30 ]; do
    sleep 1
    i=$((i + 1))
done
mkdir -p /newroot
mount -t ext4 -o rw /dev/vda /newroot || fail root-mount-failed
rm -rf /newroot/pfnaudit-test
cp -a /payload /newroot/pfnaudit-test || fail payload-copy-failed
cp /bin/busybox /newroot/pfnaudit-test/busybox
cp /newroot/pfnaudit-test/pfnaudit-systemd-test.service /newroot/etc/systemd/system/
umount /proc /sys /dev
exec switch_root /newroot /lib/systemd/systemd
