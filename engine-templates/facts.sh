# Guest facts for `strata engine`: one key=value per line, read by src/engine/facts.rs.
# Runs as root under sh; must not change anything. Every process costs ~50 ms in an emulated
# guest, so each tool runs once.
. /etc/os-release
echo "release=${VERSION_CODENAME:-unknown}"
echo "kernel=$(uname -r)"
# Packages an install may need (a re-run sees at once that nothing is missing), and the engine.
dpkg-query -W -f '${Package} ${Version} ${db:Status-Status}\n' \
    docker.io apparmor e2fsprogs btrfs-progs lvm2 xfsprogs thin-provisioning-tools 2>/dev/null |
  while read -r pkg version status; do
    [ "$status" = installed ] || continue
    echo "installed=$pkg"
    [ "$pkg" = docker.io ] && echo "engine=$version"
  done
echo "docker_active=$(systemctl is-active docker 2>/dev/null)"
echo "cgroup_fs=$(stat -f -c %T /sys/fs/cgroup)"
# What lies under Docker's data-root now (its parent while it does not exist yet).
dir=/var/lib/docker
[ -d "$dir" ] || dir=/var/lib
fs=$(stat -f -c %T "$dir")
echo "data_root_fs=$fs"
findmnt -n -o SOURCE,TARGET --target "$dir" | { read -r source target
  case "$fs" in
    xfs) echo "xfs_ftype=$(xfs_info "$target" 2>/dev/null | grep -o 'ftype=[01]' | cut -d= -f2)" ;;
    ext2/ext3) tune2fs -l "$source" 2>/dev/null | grep -qw filetype && echo ext_filetype=1 || echo ext_filetype=0 ;;
  esac
}
# The guest's own networks; Docker's bridges (docker0, br-*, a swarm node's docker_gwbridge)
# are left out so that a re-run does not see Docker's current ranges as taken and move them.
ip -o -4 addr show scope global | while read -r _ dev _ net _; do
  case "$dev" in docker0|docker_gwbridge|br-*) continue ;; esac
  [ -n "${nic:-}" ] || { nic=$dev; echo "nic_mtu=$(cat /sys/class/net/$dev/mtu)"; }
  echo "guest_net=$net"
done
ip -4 route show | while read -r dst _ dev _; do
  case "$dev" in docker0|docker_gwbridge|br-*) continue ;; esac
  case "$dst" in */*) echo "guest_net=$dst" ;; esac
done
# A swarm node (its state is kept here until it leaves): Docker refuses live-restore there.
[ -s /var/lib/docker/swarm/docker-state.json ] && echo swarm_member=1
[ -f /etc/docker/daemon.json ] && echo "daemon_json_sha256=$(sha256sum /etc/docker/daemon.json | cut -d' ' -f1)"
# strata's record of the engine, on one line (JSON strings hold no raw newlines).
[ -f /etc/strata/engine.json ] && echo "record=$(tr -d '\n' < /etc/strata/engine.json)"
exit 0
