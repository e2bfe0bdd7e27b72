#!/usr/bin/env bash
# The baseline a person would write without strata for a swarm of three of strata's VMs: on
# every VM, live-restore off in daemon.json and dockerd reloaded (Docker refuses swarm mode with
# it, and the baked engine has it on); `docker swarm init` on the manager with its address and
# the same address pool strata chose; the worker token read there; `docker swarm join` on each
# worker; then a poll until every node is Ready. No checks, no labels, the token on a command
# line. It logs in with what strata made for each VM (key and pinned host key in its folder).
#   plain-swarm.sh up POOL MANAGER WORKER...     (each VM as IP:FOLDER)
#   plain-swarm.sh down MANAGER WORKER...        (leave, docker_gwbridge removed, live-restore back on)
set -euo pipefail
action=$1; shift
on() { # IP:FOLDER COMMAND
  local ip=${1%%:*} dir=${1#*:}
  ssh -i "$dir/id_ed25519" -o "UserKnownHostsFile=$dir/known_hosts" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes "root@$ip" "$2"
}
live_restore() { # IP:FOLDER true|false
  local from=true; [[ $2 == true ]] && from=false
  on "$1" "sed -i 's/\"live-restore\": $from/\"live-restore\": $2/' /etc/docker/daemon.json && kill -HUP \$(pidof dockerd) && until [ \"\$(docker info --format '{{.LiveRestoreEnabled}}')\" = $2 ]; do sleep 0.2; done"
}
case $action in
  up)
    pool=$1 manager=$2; shift 2
    for vm in "$manager" "$@"; do live_restore "$vm" false & done
    wait
    on "$manager" "docker swarm init --advertise-addr ${manager%%:*} --listen-addr ${manager%%:*}:2377 --default-addr-pool $pool >/dev/null"
    token=$(on "$manager" "docker swarm join-token -q worker")
    for vm in "$@"; do on "$vm" "docker swarm join --token $token ${manager%%:*}:2377 >/dev/null" & done
    wait
    nodes=$(( $# + 1 ))
    on "$manager" "until [ \$(docker node ls --format '{{.Status}}' | grep -c Ready) -eq $nodes ]; do sleep 0.2; done"
    ;;
  down)
    manager=$1; shift
    for vm in "$@"; do on "$vm" "docker swarm leave >/dev/null" & done
    wait
    on "$manager" "docker swarm leave --force >/dev/null"
    for vm in "$manager" "$@"; do on "$vm" "docker network rm docker_gwbridge >/dev/null 2>&1 || true" & done
    wait
    for vm in "$manager" "$@"; do live_restore "$vm" true & done
    wait
    ;;
  *) echo "usage: plain-swarm.sh up POOL MANAGER WORKER... | down MANAGER WORKER..." >&2; exit 2 ;;
esac
