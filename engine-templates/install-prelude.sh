# The start of every package install strata runs (guest or template chroot). Package
# scripts must not start Docker with the distribution's defaults: strata starts it once, with
# its own daemon.json.
set -eu
# Marked as strata's, so that one left by an interrupted run is recognised and removed.
mark='# strata engine install'
if [ ! -e /usr/sbin/policy-rc.d ] || grep -q "$mark" /usr/sbin/policy-rc.d; then
  printf '#!/bin/sh\n%s\nexit 101\n' "$mark" > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# Finish what an interrupted earlier run left half-configured. dpkg does not wait for its
# lock (an earlier run's apt may still hold it, or a first-boot job): wait here, up to 5 min.
i=0
until dpkg --configure -a 2>/tmp/strata-dpkg.err; do
  grep -q lock /tmp/strata-dpkg.err || { cat /tmp/strata-dpkg.err >&2; exit 1; }
  i=$((i+1))
  [ $i -lt 300 ] || { echo "strata: the dpkg lock stayed held for 5 minutes" >&2; exit 1; }
  sleep 1
done
