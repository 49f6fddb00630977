#!/usr/bin/env bash
# The emulated arm64 and armhf boards of scripts/device-smoke.sh as SSH targets: `edgekit devices
# check`, `devices setup`, `push` and `bench --on arm64,armhf` through a real sshd, one table.
#
#   sudo bash scripts/fleet-emulated.sh [BUILD_DIR [TEST.npz]]
#
# Needs the Debian roots and venvs that `scripts/device-smoke.sh arm64` and `... armhf` build
# (run them first; this script runs them when a root is missing). BUILD_DIR and TEST.npz default
# to device-smoke arm64's export and test set. One sshd on two free ports of 127.0.0.1 (a
# throwaway host key and user key, its own known_hosts and ssh config): each port's sessions are
# chrooted into one root (ChrootDirectory), where the ARM programs run under qemu-user through
# binfmt, with QEMU_CPU pinned (SetEnv) as in device-smoke. Timings under emulation are not
# speeds: the table is labelled emulated; what it shows is that the build loads, runs and gives
# the same accuracy on both, with ai-edge-litert on arm64 and tflite-runtime on armhf.
# Writes fleet.json/.md/.png and bench.<board>.json into BUILD_DIR, the console output into
# $EDGEKIT_FLEET_WORK/fleet.txt  [/tmp/edgekit-fleet-emulated]. EDGEKIT_FLEET_ARCHS picks the
# boards  ["arm64 armhf"].
set -euo pipefail
prog=fleet-emulated
die() { echo "$prog: error: $*" >&2; exit 1; }
say() { echo "== $prog: $*"; }
[ "$(id -u)" -eq 0 ] || die "must run as root (chroot sessions): sudo bash $0"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${EDGEKIT_DEVICE_CACHE:-/var/cache/edgekit-devices}"
work="${EDGEKIT_FLEET_WORK:-/tmp/edgekit-fleet-emulated}"
smoke="${EDGEKIT_DEVICE_WORK:-/tmp/edgekit-device-smoke-arm64}"
build="${1:-$smoke/export}"
data="${2:-$smoke/test.npz}"
host_py="${EDGEKIT_HOST_PYTHON:-python3}"
archs="${EDGEKIT_FLEET_ARCHS:-arm64 armhf}"
for arch in $archs; do
  case "$arch" in arm64|armhf) ;; *) die "EDGEKIT_FLEET_ARCHS: arm64 and/or armhf, got '$arch'" ;; esac
done
[ -x /usr/sbin/sshd ] || bash "$repo/scripts/install-test-deps.sh"

for arch in $archs; do
  if [ ! -e "$cache/bookworm-$arch/.edgekit-device-root-complete" ] \
    || [ ! -x "$cache/bookworm-$arch/opt/edgekit-venv/bin/python" ]; then
    say "no $arch root with a venv yet: bash scripts/device-smoke.sh $arch"
    bash "$repo/scripts/device-smoke.sh" "$arch" || die "device-smoke $arch failed"
  fi
done
[ -f "$build/manifest.json" ] || die "no build in $build: pass BUILD_DIR (an edgekit export)"
[ -f "$data" ] || die "no test set $data: pass TEST.npz"

mounts_under() {
  local dir; dir="$(readlink -m "$1")"
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
sshd_pid=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null; wait "$sshd_pid" 2>/dev/null; fi
  for arch in $archs; do
    for m in $(mounts_under "$cache/bookworm-$arch"); do umount "$m" 2>/dev/null || umount -l "$m"; done
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$work"
mkdir -p "$work"
# binfmt (device-smoke registered it; a reboot unmounts it)
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
  mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
  update-binfmts --enable >/dev/null 2>&1 || true
fi

say "mounting proc, a Raspberry-Pi-like /proc/cpuinfo, sys and dev into both roots"
for arch in $archs; do
  root="$cache/bookworm-$arch"
  for m in $(mounts_under "$root"); do umount "$m" 2>/dev/null || umount -l "$m"; done
  cpuinfo="$work/cpuinfo-$arch"
  for ((i = 0; i < $(nproc); i++)); do
    if [ "$arch" = arm64 ]; then  # Cortex-A72 (Raspberry Pi 4): LiteRT's CPU detection needs it
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
    else
      printf 'processor\t: %d\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 120.00\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x2\nCPU part\t: 0xc0f\nCPU revision\t: 3\n\n' "$i"
    fi
  done >"$cpuinfo"
  if [ "$arch" = arm64 ]; then
    printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n' >>"$cpuinfo"
  else
    printf 'Hardware\t: Generic DT based system\n' >>"$cpuinfo"
  fi
  mount -t proc proc "$root/proc"
  mount --bind "$cpuinfo" "$root/proc/cpuinfo"
  mount -t sysfs sysfs "$root/sys" 2>/dev/null || mount --bind /sys "$root/sys"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
done

say "sshd on 127.0.0.1 with a throwaway host key: one port per root (ChrootDirectory)"
ports="$("$host_py" -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
read -r port64 port32 <<<"$ports"
ssh-keygen -q -t ed25519 -N "" -f "$work/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$work/user_key"
cp "$work/user_key.pub" "$work/authorized_keys"
cat >"$work/sshd_config" <<EOF
Port $port64
Port $port32
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
LogLevel ERROR
Match LocalPort $port64
    ChrootDirectory $cache/bookworm-arm64
    SetEnv QEMU_CPU=cortex-a72
Match LocalPort $port32
    ChrootDirectory $cache/bookworm-armhf
    SetEnv QEMU_CPU=cortex-a15
EOF
key="$(cut -d' ' -f1,2 "$work/host_key.pub")"
printf '[127.0.0.1]:%s %s\n[127.0.0.1]:%s %s\n' "$port64" "$key" "$port32" "$key" >"$work/known_hosts"
cat >"$work/ssh_config" <<EOF
Host arm64
    Port $port64
Host armhf
    Port $port32
Host *
    HostName 127.0.0.1
    User root
    IdentityFile $work/user_key
    IdentitiesOnly yes
    UserKnownHostsFile $work/known_hosts
    StrictHostKeyChecking yes
EOF
cat >"$work/devices.toml" <<EOF
ssh_config = "$work/ssh_config"

[devices.arm64]
target = "arm64"
path = "/srv/edgekit-fleet/models"
python = "/usr/bin/python3"
venv = "/opt/edgekit-venv"
emulated = true
timeout = 1800

[devices.armhf]
target = "armhf"
path = "/srv/edgekit-fleet/models"
python = "/usr/bin/python3"
venv = "/opt/edgekit-venv"
system_site_packages = true
emulated = true
timeout = 1800
EOF
/usr/sbin/sshd -f "$work/sshd_config" -D -e 2>"$work/sshd.log" &
sshd_pid=$!
for _ in $(seq 50); do
  if "$host_py" -c "import socket, sys
for p in sys.argv[1:]: socket.create_connection(('127.0.0.1', int(p)), timeout=1).close()" \
    "$port64" "$port32" 2>/dev/null; then break; fi
  kill -0 "$sshd_pid" 2>/dev/null || die "sshd did not start: $(tail -n 3 "$work/sshd.log")"
  sleep 0.2
done

export EDGEKIT_DEVICES="$work/devices.toml" COLUMNS=200
edgekit() { PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$host_py" -m edgekit.cli.main "$@"; }
status=0
step() { echo "---- \$ edgekit $*"; if edgekit "$@"; then :; else echo "---- exit $?"; status=1; fi; }
on="$(echo $archs | tr ' ' ',')"
for arch in $archs; do step devices setup "$arch"; done
step devices check $archs
step push "$build" $archs
step bench "$build" --on "$on" --data "$data" --samples 200 --min-runs 5 --min-time 0.05 \
  --warmup-runs 1 --warmup-time 0 --rounds 2 >"$work/fleet.txt" 2>&1
cat "$work/fleet.txt"
ARCHS="$archs" "$host_py" - "$build/fleet.json" <<'PY' || status=1
import json, os, sys
fleet = json.load(open(sys.argv[1]))
boards = {b["name"]: b for b in fleet["boards"]}
want = {"arm64": ("aarch64", "litert"), "armhf": ("armv7l", "tflite-runtime")}
want = {k: v for k, v in want.items() if k in os.environ["ARCHS"].split()}
bad = [f"{n}: {boards.get(n)}" for n, (arch, rt) in want.items()
       if not boards.get(n, {}).get("ok") or boards[n]["arch"] != arch
       or not str(boards[n]["runtime"]).startswith(rt) or not boards[n]["emulated"]
       or boards[n]["failed_files"]]
rows = fleet["rows"]
acc = {n: [r["boards"].get(n, {}).get("accuracy") for r in rows] for n in want}
print(f"fleet-emulated: {len(rows)} files; accuracy {acc}")
if bad:
    sys.exit("fleet-emulated: FAILED: " + "; ".join(bad))
used = ", ".join(n + " with " + str(boards[n]["runtime"]) for n in want)
print(f"fleet-emulated: OK ({used}; one table, labelled emulated)")
PY
exit "$status"
