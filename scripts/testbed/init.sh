#!/bin/sh
# /init of the testbed initramfs (busybox sh, PID 1).
# Mounts proc/sys/devtmpfs, insmods the virtio modules in order, runs /test.sh
# under a timeout, prints exactly one line
#     TESTBED-RESULT: PASS
#     TESTBED-RESULT: FAIL <reason>
# and powers off. Kernel command line knobs (all optional):
#     testbed.timeout=SECONDS   kill /test.sh after this long (default 90)
#     testbed.debug=1           print dmesg before the result line even on PASS
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /tmp
mount -t tmpfs -o size=256m tmpfs /tmp

param() {  # param KEY DEFAULT -> value of testbed.KEY= on the kernel command line
  for w in $(cat /proc/cmdline); do
    case "$w" in "testbed.$1="*) echo "${w#*=}"; return ;; esac
  done
  echo "$2"
}

finish() {  # finish PASS | finish FAIL reason...
  sync
  if [ "$1" != PASS ] || [ "$(param debug 0)" = 1 ]; then
    echo "---- dmesg (tail) ----"
    dmesg | tail -n 40
    echo "----------------------"
  fi
  echo 1 >/proc/sys/kernel/printk   # keep kernel messages off the result line
  echo
  echo "TESTBED-RESULT: $*"
  echo
  poweroff -f
  sleep 5
  echo o >/proc/sysrq-trigger        # poweroff failed; the kernel panics when init exits (panic=-1 + -no-reboot)
  exit 1
}

echo "testbed: kernel $(uname -r), $(nproc) cpu(s), cmdline: $(cat /proc/cmdline)"
t0=$(cut -d' ' -f1 /proc/uptime)
for m in $(cat /lib/modules/modules.order); do
  insmod "/lib/modules/$m.ko" || finish FAIL "insmod $m failed"
done
echo "testbed: modules loaded ($(cat /lib/modules/modules.order | tr '\n' ' ')) at ${t0}s uptime"

rm -f /tmp/testbed-reason
timeout -s KILL "$(param timeout 90)" /bin/sh /test.sh
rc=$?
if [ "$rc" -eq 0 ]; then
  finish PASS
elif [ "$rc" -eq 137 ]; then
  finish FAIL "guest test timed out after $(param timeout 90)s"
else
  reason=$(cat /tmp/testbed-reason 2>/dev/null)
  finish FAIL "${reason:-/test.sh exited with $rc}"
fi
