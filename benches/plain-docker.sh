#!/usr/bin/env bash
# The baseline a person would write without strata: scp the .debs into the guest, apt-get
# install them, then poll until `docker info` answers. It uses the login strata made for the
# VM (key and pinned host key in VM_DIR) and the same .debs strata's bundle pushed.
# usage: plain-docker.sh IP VM_DIR DEB...
set -euo pipefail
ip=$1 dir=$2
shift 2
opts=(-i "$dir/id_ed25519" -o "UserKnownHostsFile=$dir/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes)
ssh "${opts[@]}" "root@$ip" mkdir -p /var/tmp/plain-debs
scp -q "${opts[@]}" "$@" "root@$ip:/var/tmp/plain-debs/"
ssh "${opts[@]}" "root@$ip" 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /var/tmp/plain-debs/*.deb >/dev/null'
until ssh "${opts[@]}" "root@$ip" docker info >/dev/null 2>&1; do sleep 0.5; done
