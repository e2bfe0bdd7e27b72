# Guest facts for `strata check` beyond engine-templates/facts.sh: one key=value per line,
# read by src/check/guest_facts.rs. Runs as root under sh; must not change anything.
# Driver folders under data-root: a leftover one (aufs, devicemapper, overlay) makes Docker
# refuse to start or pick the old driver (STO-5/6).
for d in aufs btrfs devicemapper overlay overlay2 vfs zfs; do
  [ -d "/var/lib/docker/$d" ] && echo "driver_dir=$d"
done
[ -f /etc/docker/daemon.json ] && echo "daemon_json_mtime=$(stat -c %Y /etc/docker/daemon.json)"
pid=$(pidof dockerd 2>/dev/null | cut -d' ' -f1)
[ -n "$pid" ] && echo "dockerd_started=$(stat -c %Y /proc/$pid)"
# `dockerd --validate` (Docker 23+) is the engine's own word on daemon.json.
if [ -f /etc/docker/daemon.json ] && dockerd --validate --config-file /etc/docker/daemon.json >/tmp/.strata-validate 2>&1; then
  echo "daemon_json_valid=yes"
elif grep -q "unknown flag: --validate" /tmp/.strata-validate 2>/dev/null; then
  echo "daemon_json_valid=unknown"
elif [ -f /etc/docker/daemon.json ]; then
  echo "daemon_json_valid=no $(tr '\n' ' ' < /tmp/.strata-validate)"
fi
rm -f /tmp/.strata-validate
exit 0
