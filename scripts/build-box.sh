#!/usr/bin/env bash
# pktlab's Vagrant box (libvirt provider), made here from Debian packages only (boxes cannot be downloaded).
#
#   scripts/build-box.sh [--force] [OUT_DIR]      OUT_DIR: /var/cache/pktlab/box unless PKTLAB_BOX_DIR says else
#
# Cached: nothing is done when OUT_DIR/pktlab-debian12.box is newer than this script (--force rebuilds); the
# downloaded .deb files stay in OUT_DIR/debs for the next build. Needs root, debootstrap, qemu-utils, e2fsprogs
# (`make vm` installs them) and a Debian mirror (DEBIAN_MIRROR, default deb.debian.org).
#
# 1. debootstrap Debian 12 (bookworm, minbase) with a Debian kernel (linux-image-amd64), systemd, openssh-server,
#    sudo and what a pktlab host runs: python3 with nacl, pyroute2 and networkx, iproute2, ping, iperf3, tcpdump.
# 2. The Vagrant conventions: user `vagrant` with passwordless sudo and Vagrant's public "insecure" key (Vagrant
#    puts a key of its own in at the first `vagrant up`); DHCP (systemd-networkd, client id = MAC) for Vagrant's
#    management network. The NICs of pktlab's links (MAC 0a:70:6b:..., testbed/backends/vm.py) are renamed by udev
#    to pktlinkN and left alone: pktlab moves each into its node's namespace. Each VM makes its own machine id
#    and SSH host keys at first boot.
# 3. The root filesystem goes into an ext4 image without mounting anything (mkfs.ext4 -d), then into qcow2.
# 4. No boot loader: libvirt boots the Debian kernel and initrd kept next to the box (the box's Vagrantfile says
#    where), so no loop device, partition table or grub is needed.
# 5. The box: metadata.json + box.img + Vagrantfile in a tar.gz, then `vagrant box add pktlab/debian12`.
set -euo pipefail

FORCE=0
if [ "${1:-}" = "--force" ]; then FORCE=1; shift; fi
OUT=$(realpath -m "${1:-${PKTLAB_BOX_DIR:-/var/cache/pktlab/box}}")
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SIZE_GB=${PKTLAB_BOX_GB:-4}
BOX=$OUT/pktlab-debian12.box
NAME=pktlab/debian12
SCRIPT=$(realpath "$0")
# (debootstrap resolves no virtual packages: python3-nacl's cffi backend and scipy's numpy, BLAS and LAPACK are named)
PACKAGES=linux-image-amd64,systemd-sysv,dbus,udev,kmod,netbase,openssh-server,sudo,python3,python3-nacl,\
python3-cffi-backend,python3-pyroute2,python3-networkx,python3-scipy,python3-numpy,libblas3,liblapack3,iproute2,\
iputils-ping,iperf3,tcpdump,procps,util-linux,ca-certificates

die() { echo "build-box: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
for tool in debootstrap qemu-img mkfs.ext4 tar; do
    command -v "$tool" >/dev/null || die "$tool is missing: run \`make vm\` (it installs debootstrap and qemu-utils)"
done
INSECURE_KEY=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1 || true)
[ -n "$INSECURE_KEY" ] || die "Vagrant's insecure public key not found: is vagrant installed (\`make vm\`)?"

if [ $FORCE = 0 ] && [ -f "$BOX" ] && [ "$BOX" -nt "$SCRIPT" ]; then
    echo "build-box: $BOX is up to date (--force rebuilds it)"
else
    mkdir -p "$OUT/debs"
    WORK=$(mktemp -d "$OUT/build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    ROOT=$WORK/root
    echo "build-box: debootstrap bookworm into $ROOT (a few minutes)"
    if ! debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$OUT/debs" bookworm "$ROOT" "$MIRROR" \
            > "$OUT/debootstrap.log" 2>&1; then
        cp "$ROOT/debootstrap/debootstrap.log" "$OUT/debootstrap-inner.log" 2>/dev/null || true
        tail -5 "$OUT/debootstrap.log" >&2
        die "debootstrap failed (logs: $OUT/debootstrap.log, $OUT/debootstrap-inner.log)"
    fi

    echo "build-box: configuring the guest"
    echo pktlab > "$ROOT/etc/hostname"
    echo "/dev/vda / ext4 defaults 0 1" > "$ROOT/etc/fstab"
    printf '[Match]\nName=eth*\n\n[Network]\nDHCP=ipv4\n\n[DHCPv4]\nClientIdentifier=mac\n' \
        > "$ROOT/etc/systemd/network/10-vagrant.network"
    echo 'SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="0a:70:6b:*", NAME="pktlink%n"' \
        > "$ROOT/etc/udev/rules.d/70-pktlab-links.rules"
    chroot "$ROOT" systemctl enable systemd-networkd ssh >/dev/null 2>&1
    chroot "$ROOT" useradd -m -s /bin/bash vagrant
    chroot "$ROOT" usermod -p '*' vagrant           # no password, yet not locked: keys get in
    install -d -m 700 -o 1000 -g 1000 "$ROOT/home/vagrant/.ssh"
    install -m 600 -o 1000 -g 1000 "$INSECURE_KEY" "$ROOT/home/vagrant/.ssh/authorized_keys"
    echo "vagrant ALL=(ALL) NOPASSWD: ALL" > "$ROOT/etc/sudoers.d/vagrant"
    chmod 440 "$ROOT/etc/sudoers.d/vagrant"
    echo "UseDNS no" > "$ROOT/etc/ssh/sshd_config.d/vagrant.conf"
    rm -f "$ROOT"/etc/ssh/ssh_host_*              # each VM makes its own at first boot
    mkdir -p "$ROOT/etc/systemd/system/ssh.service.d"
    printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
        > "$ROOT/etc/systemd/system/ssh.service.d/hostkeys.conf"
    : > "$ROOT/etc/machine-id"                     # a fresh one per VM: not D-Bus's copy of the build's
    rm -f "$ROOT/var/lib/dbus/machine-id"
    ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*

    cp "$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -1)" "$WORK/vmlinuz"
    cp "$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -1)" "$WORK/initrd.img"

    echo "build-box: ext4 image (${SIZE_GB} GB, sparse) and qcow2"
    mkfs.ext4 -q -F -L root -d "$ROOT" "$WORK/root.raw" "${SIZE_GB}G"
    qemu-img convert -O qcow2 "$WORK/root.raw" "$WORK/box.img"
    rm -f "$WORK/root.raw"

    install -m 644 "$WORK/vmlinuz" "$OUT/vmlinuz"
    install -m 644 "$WORK/initrd.img" "$OUT/initrd.img"
    printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %s}\n' "$SIZE_GB" > "$WORK/metadata.json"
    cat > "$WORK/Vagrantfile" <<EOF
# pktlab/debian12, built by scripts/build-box.sh: booted straight from its Debian kernel (no boot loader)
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = "$OUT/vmlinuz"
    libvirt.initrd = "$OUT/initrd.img"
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0"
    libvirt.disk_bus = "virtio"
  end
end
EOF
    tar -C "$WORK" -czf "$BOX.tmp" metadata.json Vagrantfile box.img
    mv "$BOX.tmp" "$BOX"
    echo "build-box: wrote $BOX ($(du -h "$BOX" | cut -f1))"
fi

if command -v vagrant >/dev/null; then
    if [ $FORCE = 1 ] || ! vagrant box list 2>/dev/null | grep -q "^$NAME "; then
        vagrant box add --force --name "$NAME" "$BOX" >/dev/null
        # the previous box's copy in libvirt's image pool (vagrant-libvirt uploads a box there at its first use)
        rm -f /var/lib/libvirt/images/pktlab-VAGRANTSLASH-debian12_vagrant_box_image_*
        echo "build-box: added to Vagrant as $NAME"
    fi
fi
