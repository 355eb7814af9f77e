#!/bin/bash
# build-image.sh OUT [WORKER]: builds a small bootable image for the qemu
# latent worker driver from the Debian packages installed on this machine:
#
#   OUT/vmlinux     the kernel of linux-image-amd64, uncompressed, for PVH
#                   boot (the bzImage spends ~5 s unpacking itself under
#                   emulation)
#   OUT/initrd.gz   busybox-static, starforge-worker, the virtio and ext4
#                   modules, and an /init that reads the kernel command line
#   OUT/base.qcow2  an empty ext4 disk: the worker's basedir. The driver
#                   gives each instance a throw-away overlay of it.
#
# WORKER is a static starforge-worker binary; without it the script builds
# one with `go build` (CGO_ENABLED=0) from this checkout.
#
# Needs (Debian): linux-image-amd64 busybox-static cpio e2fsprogs xz-utils
# qemu-utils. KVER picks the kernel if several are installed.
set -euo pipefail

out=${1:?usage: build-image.sh OUT [WORKER]}
worker=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

kver=${KVER:-$(ls /lib/modules | sort -V | tail -n 1)}
vmlinuz=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
[ -r "$vmlinuz" ] || { echo "build-image.sh: no readable $vmlinuz (apt-get install linux-image-amd64)" >&2; exit 1; }
[ -r "$moddir/modules.dep" ] || { echo "build-image.sh: no $moddir/modules.dep" >&2; exit 1; }
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
	busybox=/bin/busybox
fi
[ -x "$busybox" ] || { echo "build-image.sh: no static busybox (apt-get install busybox-static)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The kernel: the xz stream inside the bzImage is the ELF with the PVH
# entry point. It starts with the xz magic FD 37 7A 58 5A 00.
off=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$vmlinuz" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || { echo "build-image.sh: no xz stream in $vmlinuz" >&2; exit 1; }
tail -c +"$((off + 1))" "$vmlinuz" | xz -dc --single-stream >"$tmp/vmlinux" 2>/dev/null || true
head -c 4 "$tmp/vmlinux" | grep -q 'ELF' || { echo "build-image.sh: $vmlinuz did not unpack to an ELF" >&2; exit 1; }
mv "$tmp/vmlinux" "$out/vmlinux"

# The worker.
if [ -z "$worker" ]; then
	worker=$tmp/starforge-worker
	(cd "$here/../.." && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$worker" ./worker/cmd/starforge-worker)
fi

# The initramfs tree.
root=$tmp/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,data,etc,lib/modules}
cp "$busybox" "$root/bin/busybox"
cp "$worker" "$root/bin/starforge-worker"
chmod 755 "$root/bin/busybox" "$root/bin/starforge-worker"
ln -s busybox "$root/bin/sh"

# Modules, with their dependencies from modules.dep, each after what it
# needs. crc32c_generic is only a soft dependency of ext4, so it is named.
declare -A seen=()
order=()
add_module() { # add_module PATH-IN-modules.dep
	local m=$1 deps d
	[ -n "${seen[$m]:-}" ] && return
	seen[$m]=1
	deps=$(grep -E "^${m//./\\.}:" "$moddir/modules.dep" | cut -d: -f2-)
	for d in $deps; do add_module "$d"; done
	order+=("$m")
}
for name in virtio_pci virtio_net virtio_blk crc32c_generic ext4; do
	path=$(grep -oE "^[^:]*/${name}\.ko(\.xz|\.zst|\.gz)?:" "$moddir/modules.dep" | head -n 1 | tr -d :)
	[ -n "$path" ] || { echo "build-image.sh: module $name not in $moddir/modules.dep (built in?)" >&2; continue; }
	add_module "$path"
done
: >"$root/modules.order"
for m in "${order[@]}"; do
	base=$(basename "$m")
	base=${base%.xz}; base=${base%.zst}; base=${base%.gz}
	case $m in
	*.xz) xz -dc "$moddir/$m" >"$root/lib/modules/$base" ;;
	*.zst) zstd -qdc "$moddir/$m" >"$root/lib/modules/$base" ;;
	*.gz) gzip -dc "$moddir/$m" >"$root/lib/modules/$base" ;;
	*) cp "$moddir/$m" "$root/lib/modules/$base" ;;
	esac
	echo "$base" >>"$root/modules.order"
done

cp "$here/init" "$root/init"
chmod 755 "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9) >"$out/initrd.gz"

# The base disk: an empty ext4 file system, then qcow2.
rm -f "$tmp/base.raw" "$out/base.qcow2"
mkfs.ext4 -q -F -L starforge -O ^metadata_csum_seed "$tmp/base.raw" 256M
qemu-img convert -q -f raw -O qcow2 "$tmp/base.raw" "$out/base.qcow2"
chmod a-w "$out/base.qcow2"

echo "build-image.sh: kernel $kver: $out/vmlinux $out/initrd.gz $out/base.qcow2"
