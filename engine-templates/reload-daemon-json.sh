# Put /etc/docker/daemon.json.strata-new in place and make the running dockerd re-read it
# (SIGHUP through systemd's reload): live-restore is one of the settings Docker reloads
# without a restart, and it must be on before a restart for containers to survive it. On a
# failed reload the previous file comes back.
set -u
cur=/etc/docker/daemon.json
new=/etc/docker/daemon.json.strata-new
[ -f "$cur" ] && cp -p "$cur" "$cur.strata-prev"
mv "$new" "$cur"
if systemctl reload docker.service; then
  rm -f "$cur.strata-prev"
  exit 0
fi
if [ -f "$cur.strata-prev" ]; then mv "$cur.strata-prev" "$cur"; else rm -f "$cur"; fi
echo "strata: dockerd did not reload daemon.json; the previous file is back in place" >&2
exit 5
