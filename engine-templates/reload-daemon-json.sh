# Swap daemon.json and make the running dockerd re-read it (SIGHUP through systemd's reload):
# live-restore is one of the settings Docker reloads without a restart, and it must be on
# before a restart for containers to survive it. The previous file stays beside it until the
# caller has seen the setting take effect:
#   apply   put daemon.json.strata-new in place and reload; a failed reload puts the old back
#   keep    the new file works: drop the saved previous one
#   revert  the new file did not take effect: put the previous one back and reload
set -u
cur=/etc/docker/daemon.json
new=/etc/docker/daemon.json.strata-new
prev=/etc/docker/daemon.json.strata-prev
none=/etc/docker/daemon.json.strata-none
put_back() {
  if [ -f "$prev" ]; then mv "$prev" "$cur"; elif [ -f "$none" ]; then rm -f "$cur" "$none"; fi
}
case "${1:-}" in
  apply)
    rm -f "$prev" "$none"
    if [ -f "$cur" ]; then cp -p "$cur" "$prev"; else : >"$none"; fi
    mv "$new" "$cur"
    systemctl reload docker.service && exit 0
    put_back
    echo "strata: dockerd did not reload daemon.json; the previous file is back in place" >&2
    exit 5 ;;
  keep)
    rm -f "$prev" "$none" ;;
  revert)
    put_back
    systemctl reload docker.service ;;
  *)
    echo "usage: reload-daemon-json.sh apply|keep|revert" >&2
    exit 2 ;;
esac
