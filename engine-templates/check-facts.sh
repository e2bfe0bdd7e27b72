# Guest facts for `strata check` beyond engine-templates/facts.sh: one key=value per line,
# read by src/check/guest_facts.rs. Runs as root under sh; must not change anything.
# Driver folders under data-root: a leftover one (aufs, devicemapper, overlay) makes Docker
# refuse to start or pick the old driver (STO-5/6).
for d in aufs btrfs devicemapper overlay overlay2 vfs zfs; do
  [ -d "/var/lib/docker/$d" ] && echo "driver_dir=$d"
done
[ -f /etc/docker/daemon.json ] && echo "daemon_json_mtime=$(stat -c %Y /etc/docker/daemon.json)"
pid=$(pidof dockerd 2>/dev/null | cut -d' ' -f1)
if [ -n "$pid" ]; then
  # Start time from the kernel (boot time + field 22 of stat, in clock ticks): the mtime of
  # /proc/PID is when that directory was first looked at, not when dockerd started.
  ticks=$(cut -d' ' -f22 "/proc/$pid/stat")
  btime=$(awk '/^btime/ {print $2}' /proc/stat)
  echo "dockerd_started=$((btime + ticks / $(getconf CLK_TCK)))"
fi
# `dockerd --validate` (Docker 23+) is the engine's own word on daemon.json; its output is
# kept in a variable so the check writes nothing in the guest.
if [ -f /etc/docker/daemon.json ] && command -v dockerd >/dev/null 2>&1; then
  if said=$(dockerd --validate --config-file /etc/docker/daemon.json 2>&1); then
    echo "daemon_json_valid=yes"
  elif printf '%s' "$said" | grep -q "unknown flag: --validate"; then
    echo "daemon_json_valid=unknown"
  else
    echo "daemon_json_valid=no $(printf '%s' "$said" | tr '\n' ' ')"
  fi
fi
exit 0
