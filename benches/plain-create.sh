#!/usr/bin/env bash
# The baseline a person would write without strata: qemu-img create -b, a DHCP reservation
# with virsh net-update, virsh define + start, then (with --wait) poll ssh until it answers.
# usage: plain-create.sh NAME IMAGE KERNEL INITRD NETWORK IP MAC CPUS KEY [--wait]
# With PLAIN_SMBIOS=1 it hands the guest its hostname, a login key and a host key the way
# strata's template expects them (SMBIOS OEM strings; the private host key as a fw_cfg file,
# removed once QEMU has started), so it can boot strata's template too, doing the same work.
set -euo pipefail
name=$1 image=$2 kernel=$3 initrd=$4 net=$5 ip=$6 mac=$7 cpus=$8 key=$9 wait=${10:-}
disk=/var/lib/strata/pool/bench-plain-$name.qcow2

sysinfo='' smbios='' keydir=''
if [[ "${PLAIN_SMBIOS:-}" == 1 ]]; then
  keydir=$(mktemp -d)
  chmod 0711 "$keydir"
  ssh-keygen -q -t ed25519 -N '' -f "$keydir/host_key"
  sysinfo="<sysinfo type='smbios'><oemStrings>
    <entry>strata.hostname=$name</entry>
    <entry>strata.authorized_key=$(cat "$key.pub")</entry>
    <entry>strata.host_key_pub=$(cat "$keydir/host_key.pub")</entry>
  </oemStrings></sysinfo>
  <sysinfo type='fwcfg'><entry name='opt/strata/host_key' file='$keydir/host_key'/></sysinfo>"
  smbios="<smbios mode='sysinfo'/>"
fi

qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$disk" 8G
virsh -q net-update "$net" add ip-dhcp-host "<host mac='$mac' name='$name' ip='$ip'/>" --live --config >/dev/null
xml=$(mktemp)
cat > "$xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>$cpus</vcpu>
  $sysinfo
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$kernel</kernel>
    <initrd>$initrd</initrd>
    <cmdline>root=/dev/vda rw console=ttyS0 quiet</cmdline>
    $smbios
  </os>
  <features><acpi/><tcg><tb-cache unit='MiB'>128</tb-cache></tcg></features>
  <cpu mode='maximum' check='none'/>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='$net'/>
      <mac address='$mac'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
XML
virsh -q define "$xml" >/dev/null
rm -f "$xml"
virsh -q start "$name" >/dev/null
[[ -z "$keydir" ]] || rm -rf "$keydir"
if [[ "$wait" == --wait ]]; then
  until ssh -q -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=1 "root@$ip" true 2>/dev/null; do
    sleep 0.2
  done
fi
