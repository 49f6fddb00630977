#!/usr/bin/env bash
# Smoke test of edgekit's device side (verify, inspect, bench) where TensorFlow is absent.
#
#   sudo bash scripts/device-smoke.sh arm64|armhf|x86-tflite-runtime
#
#   arm64               Debian bookworm arm64 root under qemu-user: ai-edge-litert + numpy 2 (PyPI)
#   armhf               Debian bookworm armhf root under qemu-user: tflite-runtime 2.14 + Debian's
#                       numpy 1.24 (venv with --system-site-packages), chosen by the wheel's markers
#   x86-tflite-runtime  a venv on this host: tflite-runtime 2.14, numpy<2, edgekit --no-deps
#                       (an old device image: no ai-edge-litert, no TensorFlow)
#
# On this x86 host (edgekit installed with TensorFlow): builds the edgekit wheel, makes a small
# export and a test set of 500 real Fashion-MNIST test images, and dumps every file's raw outputs
# with ai-edge-litert. On the device: installs the wheel with pip as a user would, runs
# `edgekit verify`, `edgekit inspect --json`, `edgekit bench --json`, checks TensorFlow is absent,
# dumps the raw outputs again, with the runtime's default kernels (XNNPACK) and with its builtin
# kernels, and compares each with the same dump on the host (scripts/device_outputs.py): top-1
# agreement 100%, float within rtol 1e-4 / atol 1e-6, int8 within 1 step, the number of int8
# values that differ printed. It also checks, on the device, that output 0 read by index (as
# Android/iOS/C++ apps read it) is the class probabilities in every file, the MC-dropout files of
# a second small export included (`device_outputs.py output0`: mc_mean, by index and by the
# signature runner, and the file's TFLite metadata naming it, with its labels).
# The sparse path: a third small export (the MLP pruned in 1x4 blocks, float32 + its
# `_sparse_float32` file, sparse-encoded weights) gets `edgekit verify` and `edgekit bench` on the
# device, whose row must say the runtime's builtin sparse FULLY_CONNECTED kernel ran
# (`sparse.ran`) with the dense twin's accuracy, and the same raw-output comparison with the
# host (float32: rtol 1e-4 / atol 1e-6, XNNPACK on and off).
# Not bit-exact, measured: LiteRT 2.3.0's int8 SOFTMAX rounds exact .5 ties differently on
# aarch64 and x86 (same logits; 2 of 5000 values), and tflite-runtime 2.14 runs int8 on builtin
# kernels, which differ from XNNPACK's by 1 in a few values.
# Emulated timings say nothing about a real board: this checks correctness, not speed.
#
# Needs root, Debian bookworm, network access to Debian's mirror (taken from this host's apt
# sources) and PyPI (pip's default index). Environment:
#   EDGEKIT_DEVICE_CACHE  roots and venvs, built once  [/var/cache/edgekit-devices]
#   EDGEKIT_DEVICE_WORK   this run's files, summary.json  [/tmp/edgekit-device-smoke-TARGET]
#   EDGEKIT_HOST_PYTHON   the host Python that has edgekit + TensorFlow  [python3]
#   EDGEKIT_DEBIAN_MIRROR override the mirror found in the apt sources
#   EDGEKIT_DEVICE_STEP_TIMEOUT  seconds per device command  [1800]
set -euo pipefail

prog="device-smoke"
die() {  # one line on stderr; summary.json says why when the work folder exists
  echo "$prog: error: $*" >&2
  if [ -n "${work:-}" ] && [ -e "$work/.edgekit-device-smoke" ]; then
    local msg="${*//\\/\\\\}"
    msg="${msg//\"/\\\"}"
    printf '{"target": "%s", "ok": false, "error": "%s"}\n' "$target" "$msg" >"$work/summary.json"
    echo "device-smoke $target: FAILED ($*)"
  fi
  exit 1
}
say() { echo "== $prog${target:+ $target}: $*"; }

target="${1:-}"
case "$target" in
  # builtin_int8_atol: int8 steps allowed between host and device with XNNPACK off. tflite-runtime
  # 2.14 (armhf, x86) runs builtin kernels that matched x86's bit for bit; aarch64's SOFTMAX
  # rounds .5 ties the other way (1 step on a few values).
  arm64) deb_arch=arm64; qemu_cpu=cortex-a72; binfmt=qemu-aarch64; want_machine=aarch64
         want_runtime=litert; extra_pkgs=""; venv_flags=""; builtin_int8_atol=1 ;;
  # numpy and Pillow have no armv7l wheels on PyPI: Debian's, seen through the venv.
  armhf) deb_arch=armhf; qemu_cpu=cortex-a15; binfmt=qemu-arm; want_machine=armv7l
         want_runtime=tflite-runtime; extra_pkgs=",python3-numpy,python3-pil"
         venv_flags="--system-site-packages"; builtin_int8_atol=0 ;;
  x86-tflite-runtime) deb_arch=""; qemu_cpu=""; binfmt=""; want_machine=x86_64
         want_runtime=tflite-runtime; extra_pkgs=""; venv_flags=""; builtin_int8_atol=0 ;;
  *) target=""; die "usage: sudo bash $0 arm64|armhf|x86-tflite-runtime" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root: sudo bash $0 $target"
[ "$#" -eq 1 ] || die "one TARGET only: sudo bash $0 arm64|armhf|x86-tflite-runtime"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -f "$repo/pyproject.toml" ] && [ -d "$repo/edgekit" ] \
  || die "$repo is not the edgekit repository (no pyproject.toml + edgekit/ next to scripts/)"
cache="${EDGEKIT_DEVICE_CACHE:-/var/cache/edgekit-devices}"
work="${EDGEKIT_DEVICE_WORK:-/tmp/edgekit-device-smoke-$target}"
host_py="${EDGEKIT_HOST_PYTHON:-python3}"
step_timeout="${EDGEKIT_DEVICE_STEP_TIMEOUT:-1800}"
for p in "$cache" "$work"; do
  case "$p" in /?*) ;; *) die "EDGEKIT_DEVICE_CACHE/WORK must be absolute paths, got '$p'" ;; esac
  case "$p" in *[[:space:]]*) die "no spaces allowed in '$p'" ;; esac
done
[ "$(readlink -m "$work")" != / ] && [ "$(readlink -m "$cache")" != / ] || die "refusing to use /"

t_start=$SECONDS
tmp=""
build_tmp=""
root=""
lock_fd=""

# ---- mounts: everything under a root is unmounted on any exit (error, Ctrl-C, kill) ----------
mounts_under() {  # mount points at or below $1, deepest first
  local dir; dir="$(readlink -m "$1")"
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
umount_under() {
  local m
  for m in $(mounts_under "$1"); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "$prog: warning: cannot unmount $m" >&2
  done
}
safe_rm_tree() {  # rm -rf a root only when nothing is mounted below it
  umount_under "$1"
  if [ -n "$(mounts_under "$1")" ]; then die "$1 still has mounts below it: not deleting it"; fi
  rm -rf --one-file-system "$1"
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  [ -n "$root" ] && umount_under "$root"
  if [ -n "$build_tmp" ] && [ -d "$build_tmp" ]; then
    umount_under "$build_tmp"
    [ -z "$(mounts_under "$build_tmp")" ] && rm -rf --one-file-system "$build_tmp"
  fi
  [ -n "$tmp" ] && rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "$prog: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
tmp="$(mktemp -d /tmp/edgekit-device-smoke.XXXXXX)"

# ---- host packages ---------------------------------------------------------------------------
[ -r /etc/os-release ] && . /etc/os-release
[ "${ID:-}" = debian ] || say "warning: tested on Debian bookworm only, this host is ${PRETTY_NAME:-unknown}"
need_pkgs=()
if [ -n "$deb_arch" ]; then
  for pkg in qemu-user-static binfmt-support debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
  done
else
  venv_py="/usr/bin/python3.11"
  [ -x "$venv_py" ] || venv_py="$(command -v python3.11 || true)"
  if [ -z "$venv_py" ] || ! "$venv_py" -c 'import ensurepip, venv' 2>/dev/null; then
    need_pkgs+=(python3.11 python3.11-venv)
  fi
fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  say "apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null || die "apt-get install ${need_pkgs[*]} failed"
fi
if [ -z "$deb_arch" ]; then
  venv_py="/usr/bin/python3.11"
  [ -x "$venv_py" ] || venv_py="$(command -v python3.11 || true)"
  [ -n "$venv_py" ] || die "python3.11 not found (tflite-runtime 2.14 has no wheel past Python 3.11)"
fi

# ---- binfmt_misc ------------------------------------------------------------------------------
if [ -n "$binfmt" ]; then
  if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc \
      || die "cannot mount binfmt_misc (a container needs --privileged)"
  fi
  if ! head -n1 "/proc/sys/fs/binfmt_misc/$binfmt" 2>/dev/null | grep -qx enabled; then
    update-binfmts --enable >/dev/null 2>&1 || update-binfmts --enable "$binfmt" \
      || die "update-binfmts --enable $binfmt failed"
  fi
  head -n1 "/proc/sys/fs/binfmt_misc/$binfmt" 2>/dev/null | grep -qx enabled \
    || die "binfmt $binfmt is not registered: reinstall qemu-user-static and binfmt-support"
fi

# ---- one run per target at a time; work folder -----------------------------------------------
mkdir -p "$cache"
exec {lock_fd}>"$cache/.lock-$target"
flock -n "$lock_fd" || die "another device-smoke $target run holds $cache/.lock-$target"
if [ -e "$work" ]; then
  [ -e "$work/.edgekit-device-smoke" ] || [ -z "$(ls -A "$work" 2>/dev/null)" ] \
    || die "$work exists and is not a device-smoke folder: remove it or set EDGEKIT_DEVICE_WORK"
  [ -z "$(mounts_under "$work")" ] || die "something is mounted under $work: unmount it first"
  rm -rf --one-file-system "$work"
fi
mkdir -p "$work/wheel"
touch "$work/.edgekit-device-smoke"
cp "$repo/scripts/device_outputs.py" "$work/device_outputs.py"
steps="$work/steps.tsv"
: >"$steps"
timing() { printf '%s\t%s\n' "$1" "$2" >>"$work/timings.tsv"; }

# ---- the host side: python with edgekit + TensorFlow ----------------------------------------
host() { PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$host_py" "$@"; }
command -v "$host_py" >/dev/null || die "host python '$host_py' not found: set EDGEKIT_HOST_PYTHON"
host -c 'import importlib.util as u, sys
sys.exit(0 if all(u.find_spec(m) for m in ("edgekit", "tensorflow", "ai_edge_litert")) else 1)' \
  || die "$host_py lacks edgekit, tensorflow or ai-edge-litert: pip install -e '${repo}[train]' (or set EDGEKIT_HOST_PYTHON)"
edgekit_host() { host -c 'import sys; from edgekit.cli.main import main; sys.argv[0] = "edgekit"; main()' "$@"; }

say "building the edgekit wheel from $repo"
t0=$SECONDS
mkdir -p "$tmp/src"
for f in pyproject.toml README.md LICENSE LICENSE.txt NOTICE MANIFEST.in setup.cfg setup.py; do
  [ -e "$repo/$f" ] && cp "$repo/$f" "$tmp/src/"
done
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' -cf - edgekit | tar -C "$tmp/src" -xf -
host -m pip wheel --no-deps -q -w "$work/wheel" "$tmp/src" >"$tmp/wheel.log" 2>&1 \
  || { tail -n 20 "$tmp/wheel.log" >&2; die "pip wheel failed (log above)"; }
wheel="$(ls "$work"/wheel/edgekit-*.whl 2>/dev/null | head -n1)"
[ -n "$wheel" ] || die "pip wheel wrote no edgekit-*.whl"
wheel_name="$(basename "$wheel")"
# The wheel's dependencies decide when a cached venv must be rebuilt.
requires="$(host -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
print("\n".join(l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines()
                if l.startswith("Requires-Dist:")))' "$wheel")"
deps_key="$(printf '%s\n%s\n%s\n' "$target" "$venv_flags" "$requires" | sha256sum | cut -c1-16)"
timing wheel $((SECONDS - t0))
say "wheel $wheel_name ($((SECONDS - t0)) s)"

say "test set: the first 500 Fashion-MNIST test images"
make_test_set() {
  host -c 'import sys, numpy as np
from edgekit.core.data import load_fashion_mnist_arrays
arrays, folder = load_fashion_mnist_arrays(download=False)
x, y = arrays["x_test"][:500], arrays["y_test"][:500]
assert x.dtype == np.uint8 and x.shape == (500, 28, 28), (x.dtype, x.shape)
np.savez(sys.argv[1], x_test=x, y_test=y)
print(f"{len(x)} images from {folder}")' "$work/test.npz"
}
if ! make_test_set 2>"$tmp/data.err"; then
  say "Fashion-MNIST not found on the host: bash scripts/install-data.sh"
  bash "$repo/scripts/install-data.sh" || die "bash scripts/install-data.sh failed"
  make_test_set || die "cannot read Fashion-MNIST on the host"
fi

say "export on the host (x86, TensorFlow)"
t0=$SECONDS
edgekit_host export --train-samples 3000 --test-samples 1000 --validation-size 500 \
  --epochs 3 --prune-epochs 2 -o "$work/export" -q || die "edgekit export on the host failed"
int8_file="$(host -c 'import json, sys
records = json.load(open(sys.argv[1]))["files"]
picks = [r["file"] for r in records if r.get("precision") == "int8"]
print((picks or [r["file"] for r in records if "int8" in r["file"]] or [""])[0])' "$work/export/manifest.json")"
[ -n "$int8_file" ] || die "the export has no int8 file"
n_files="$(ls "$work"/export/*.tflite | wc -l)"
timing export $((SECONDS - t0))
say "export: $n_files files, int8 file $int8_file ($((SECONDS - t0)) s)"

say "MC-dropout export on the host (float32, mc10_float32, mc10_int8)"
t0=$SECONDS
# Python, not the CLI: --max-accuracy-drop on the CLI also searches cheaper files (int4).
host - "$work/export-mc" <<'PY' || die "the MC-dropout export on the host failed"
import sys
from edgekit.core.config import DataConfig, ExportConfig, PipelineConfig, TrainConfig
from edgekit.workstation.pipeline import run_pipeline

config = PipelineConfig(
    data=DataConfig(train_samples=3000, test_samples=1000, validation_size=500),
    train=TrainConfig(epochs=3, dropout=0.2),
    prune=None,
    export=ExportConfig(precisions=("float32",), mc_samples=(10,), max_accuracy_drop=5.0),
    output_dir=sys.argv[1],
)
result = run_pipeline(config, progress=lambda msg: None)
print("MC-dropout export:", ", ".join(f.file for f in result.export.files))
PY
timing export_mc $((SECONDS - t0))

say "sparse 1x4 export on the host (float32 + sparse_float32)"
t0=$SECONDS
# Python, not the CLI: the CLI has no option for export.sparse_min_speedup. The export writes
# the sparse file only when it times it faster than its dense twin (1.1x by default), and a CI
# machine under load can time it no faster: the file would be dropped and this check would lose
# its subject. This run checks that the sparse kernel runs, and runs right, on the device (no
# speed: emulated timings say nothing), so the gate is set so low (0.01x) that it always passes.
host - "$work/export-sparse" <<'PY' || die "the sparse 1x4 export on the host failed"
import sys

from edgekit.core.build import build_config
from edgekit.workstation.pipeline import run_pipeline

config = build_config(
    {
        "train_samples": 3000,
        "test_samples": 1000,
        "validation_size": 500,
        "epochs": 3,
        "prune_epochs": 2,
        "sparsity_structure": "1x4",
        "precision": ("float32",),
        "sparse_encoding": ("float32",),
        "export.sparse_min_speedup": 0.01,
        "output": sys.argv[1],
    }
)
result = run_pipeline(config, progress=lambda msg: None)
print("sparse 1x4 export:", ", ".join(f.file for f in result.export.files))
PY
sparse_file="$(cd "$work/export-sparse" && ls -- *_sparse_float32.tflite 2>/dev/null | head -n1 || true)"
[ -n "$sparse_file" ] || die "the sparse 1x4 export wrote no *_sparse_float32.tflite"
dense_twin="${sparse_file%_sparse_float32.tflite}_float32.tflite"
[ -s "$work/export-sparse/$dense_twin" ] \
  || die "the sparse 1x4 export wrote $sparse_file but not its dense twin $dense_twin"
timing export_sparse $((SECONDS - t0))
say "sparse export: $sparse_file and its dense twin $dense_twin ($((SECONDS - t0)) s)"

say "raw outputs on the host (ai-edge-litert with XNNPACK, and with its builtin kernels)"
host "$work/device_outputs.py" dump "$work/export" "$work/test.npz" "$work/host.npz" --runtime litert \
  || die "device_outputs.py dump failed on the host"
# The same files on the builtin kernels (tflite-runtime 2.14 runs int8 on them).
host "$work/device_outputs.py" dump "$work/export" "$work/test.npz" "$work/host-builtin.npz" \
  --runtime litert --no-xnnpack || die "device_outputs.py dump --no-xnnpack failed on the host"
host "$work/device_outputs.py" dump "$work/export-sparse" "$work/test.npz" "$work/host-sparse.npz" \
  --runtime litert || die "device_outputs.py dump export-sparse failed on the host"
host "$work/device_outputs.py" dump "$work/export-sparse" "$work/test.npz" \
  "$work/host-sparse-builtin.npz" --runtime litert --no-xnnpack \
  || die "device_outputs.py dump export-sparse --no-xnnpack failed on the host"

# ---- the device ------------------------------------------------------------------------------
proxy_env=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!v:-}" ] && proxy_env+=("$v=${!v}")
done
if [ -n "$deb_arch" ]; then
  root="$cache/bookworm-$deb_arch"
  stamp="$root/.edgekit-device-root-complete"
  dev_work=/srv/edgekit-work
  venv=/opt/edgekit-venv
  # Pin the emulated CPU: qemu's default `max` CPU gave wrong int8 results through XNNPACK.
  dev_sh() {
    timeout --foreground --kill-after=30 "$step_timeout" env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
      PATH="$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      QEMU_CPU="$qemu_cpu" "${proxy_env[@]}" \
      chroot "$root" /bin/bash -c "cd $dev_work && $1"
  }

  umount_under "$root"  # left over by a killed run
  for old in "$cache/bookworm-$deb_arch".tmp.*; do
    if [ -e "$old" ]; then say "removing $old (left by an interrupted build)"; safe_rm_tree "$old"; fi
  done
  include_pkgs="python3,python3-venv,python3-pip$extra_pkgs"
  if [ -d "$root" ] && [ ! -e "$stamp" ]; then
    say "$root is incomplete: rebuilding it"
    safe_rm_tree "$root"
  elif [ -d "$root" ] && ! grep -qxF "include=$include_pkgs" "$stamp"; then
    say "$root was built with other packages: rebuilding it"
    safe_rm_tree "$root"
  fi
  if [ ! -d "$root" ]; then
    mirror="${EDGEKIT_DEBIAN_MIRROR:-}"
    codename="${VERSION_CODENAME:-bookworm}"
    if [ -z "$mirror" ]; then
      # deb822 sources: the first URI of an enabled `deb` stanza of this release with `main`.
      mirror="$(awk -v suite="$codename" '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && \
              (" " comps " ") ~ / main / && enabled != "no") { split(uris, u, " "); if (u[1] != "") print u[1] }
          types = uris = suites = comps = enabled = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        { key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
          if (key == "types") types = val; else if (key == "uris") uris = val
          else if (key == "suites") suites = val; else if (key == "components") comps = val
          else if (key == "enabled") enabled = tolower(val) }
        END { flush() }' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -E '^(https?|ftp|file):' | head -n1 || true)"
    fi
    if [ -z "$mirror" ]; then
      # one-line sources: deb [options] URI SUITE main ...
      mirror="$(awk -v suite="$codename" '$1 == "deb" {
          i = 2; if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; break } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -E '^(https?|ftp|file):' | head -n1 || true)"
    fi
    [ -n "$mirror" ] || die "no Debian mirror for '$codename main' in /etc/apt/sources.list{,.d/}: set EDGEKIT_DEBIAN_MIRROR"
    mirror="${mirror%/}"
    build_tmp="$(mktemp -d "$cache/bookworm-$deb_arch.tmp.XXXXXX")"
    chmod 755 "$build_tmp"
    say "debootstrap bookworm $deb_arch from $mirror (about 5 min, log $cache/bookworm-$deb_arch.log)"
    t0=$SECONDS
    debootstrap --arch="$deb_arch" --variant=minbase \
      --include="$include_pkgs" bookworm "$build_tmp" "$mirror" \
      >"$cache/bookworm-$deb_arch.log" 2>&1 \
      || { tail -n 15 "$cache/bookworm-$deb_arch.log" >&2; die "debootstrap $deb_arch failed (log above)"; }
    umount_under "$build_tmp"
    [ -z "$(mounts_under "$build_tmp")" ] || die "debootstrap left mounts under $build_tmp"
    { date -u +%FT%TZ; echo "include=$include_pkgs"; } >"$build_tmp/.edgekit-device-root-complete"
    mv "$build_tmp" "$root"
    build_tmp=""
    timing root_build $((SECONDS - t0))
    say "root built in $((SECONDS - t0)) s"
  fi

  say "mounting proc, sys, dev, dev/pts, a fake ARM /proc/cpuinfo and $work into $root"
  cpuinfo="$work/cpuinfo-$deb_arch"
  ncpu="$(nproc)"
  for ((i = 0; i < ncpu; i++)); do
    if [ "$deb_arch" = arm64 ]; then  # a Raspberry Pi 4 (Cortex-A72)
      printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
    else  # a 32-bit Cortex-A15 board, like qemu's cortex-a15
      printf 'processor\t: %d\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 120.00\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x2\nCPU part\t: 0xc0f\nCPU revision\t: 3\n\n' "$i"
    fi
  done >"$cpuinfo"
  if [ "$deb_arch" = arm64 ]; then
    printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n'
  else
    printf 'Hardware\t: Generic DT based system\nRevision\t: 0000\n'
  fi >>"$cpuinfo"
  mkdir -p "$root$dev_work"
  mount -t proc proc "$root/proc" || die "cannot mount proc on $root/proc"
  # LiteRT's CPU detection segfaults under qemu on the host's x86 /proc/cpuinfo.
  mount --bind "$cpuinfo" "$root/proc/cpuinfo" || die "cannot bind $cpuinfo on $root/proc/cpuinfo"
  mount -t sysfs sysfs "$root/sys" 2>/dev/null || mount --bind /sys "$root/sys" \
    || die "cannot mount sysfs on $root/sys"
  mount --bind /dev "$root/dev" || die "cannot bind /dev on $root/dev"
  mount --bind /dev/pts "$root/dev/pts" || die "cannot bind /dev/pts on $root/dev/pts"
  mount --bind "$work" "$root$dev_work" || die "cannot bind $work on $root$dev_work"
  rm -f "$root/etc/resolv.conf"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # The device trusts what this host trusts (a TLS-intercepting proxy's CA, for instance).
  host_ca=/etc/ssl/certs/ca-certificates.crt
  if [ -s "$host_ca" ] && ! cmp -s "$host_ca" "$root$host_ca"; then
    mkdir -p "$root/etc/ssl/certs"
    cp "$host_ca" "$root$host_ca"
  fi
  machine="$(dev_sh 'uname -m')" || die "cannot run a $deb_arch program in $root (binfmt/qemu)"
  py_machine="$(dev_sh 'python3 -c "import platform; print(platform.machine())"')"
  say "QEMU_CPU=$qemu_cpu: uname -m = $machine, platform.machine() = $py_machine"
  [ "$py_machine" = "$want_machine" ] \
    || die "platform.machine() is '$py_machine' in the $deb_arch root, expected '$want_machine'"

  t0=$SECONDS
  venv_ok="$(dev_sh "cat $venv/.edgekit-smoke-deps 2>/dev/null || true")"
  if [ "$venv_ok" = "$deps_key" ]; then
    say "cached venv $venv: pip install --force-reinstall --no-deps $wheel_name"
    dev_sh "pip install -q --force-reinstall --no-deps wheel/$wheel_name" \
      || die "pip install --force-reinstall --no-deps $wheel_name failed in the $deb_arch root"
  else
    say "new venv $venv${venv_flags:+ ($venv_flags)}: pip install $wheel_name (from PyPI)"
    dev_sh "rm -rf $venv && /usr/bin/python3 -m venv $venv_flags $venv && pip install wheel/$wheel_name \
            && echo $deps_key >$venv/.edgekit-smoke-deps" \
      || die "pip install $wheel_name failed in the $deb_arch root"
  fi
  timing venv $((SECONDS - t0))
else
  venv="$cache/venv-x86-tflite-runtime"
  dev_work="$work"
  dev_sh() {
    timeout --foreground --kill-after=30 "$step_timeout" env -i HOME="${HOME:-/root}" LANG=C.UTF-8 TERM=dumb \
      PATH="$venv/bin:/usr/sbin:/usr/bin:/sbin:/bin" "${proxy_env[@]}" \
      /bin/bash -c "cd $dev_work && $1"
  }
  t0=$SECONDS
  # edgekit's dependencies minus the runtimes, numpy and TensorFlow (the old image brings those).
  pure_deps="$(printf '%s\n' "$requires" | grep -v 'extra *==' \
    | grep -viE '^(ai[-_.]edge[-_.]litert|tflite[-_.]runtime|numpy|tensorflow|tf[-_.]keras)([^a-z0-9_.-]|$)' || true)"
  if [ "$(cat "$venv/.edgekit-smoke-deps" 2>/dev/null || true)" = "$deps_key" ]; then
    say "cached venv $venv: pip install --force-reinstall --no-deps $wheel_name"
    dev_sh "pip install -q --force-reinstall --no-deps wheel/$wheel_name" \
      || die "pip install --force-reinstall --no-deps $wheel_name failed"
  else
    say "new venv $venv ($venv_py): tflite-runtime==2.14.0, numpy<2, $(echo "$pure_deps" | tr '\n' ' ')+ edgekit --no-deps"
    rm -rf --one-file-system "$venv"
    "$venv_py" -m venv "$venv" || die "$venv_py -m venv $venv failed"
    dep_args=()
    while IFS= read -r d; do if [ -n "$d" ]; then dep_args+=("$d"); fi; done <<<"$pure_deps"
    dev_sh "pip install -q tflite-runtime==2.14.0 'numpy<2'$(printf ' %q' "${dep_args[@]}") \
            && pip install -q --no-deps wheel/$wheel_name && echo $deps_key >$venv/.edgekit-smoke-deps" \
      || die "pip install in $venv failed"
  fi
  machine="$(uname -m)"
  timing venv $((SECONDS - t0))
fi
say "device venv ready ($((SECONDS - t0)) s)"

# ---- device commands: each must exit 0 (all run; failures are collected) -----------------------
run_step() {  # NAME EXPECT(0|fail) COMMAND
  local name="$1" expect="$2" cmd="$3" rc t1=$SECONDS ok
  echo "---- [$target] $name: $cmd"
  if dev_sh "$cmd"; then rc=0; else rc=$?; fi
  if [ "$expect" = fail ]; then [ "$rc" -ne 0 ] && ok=1 || ok=0; else [ "$rc" -eq 0 ] && ok=1 || ok=0; fi
  echo "---- [$target] $name: exit $rc ($((SECONDS - t1)) s) $([ "$ok" = 1 ] && echo ok || echo FAILED)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$expect" "$ok" "$((SECONDS - t1))" >>"$steps"
}
t0=$SECONDS
run_step versions 0 'python -c "import platform, sys, numpy; print(platform.machine(), sys.version.split()[0], \"numpy\", numpy.__version__)" && pip list 2>/dev/null | grep -iE "^(edgekit|ai-edge-litert|tflite-runtime|numpy) "'
run_step no-tensorflow fail 'python -c "import tensorflow" 2>&1 | tail -n 1; exit ${PIPESTATUS[0]}'
run_step verify 0 'edgekit verify export'
run_step inspect 0 "edgekit inspect export/$int8_file --json"
run_step bench 0 'edgekit bench export --data test.npz --samples 200 --min-runs 5 --min-time 0.05 --warmup-runs 1 --warmup-time 0 --rounds 2 --no-save --json out.json'
run_step dump 0 'python device_outputs.py dump export test.npz device.npz'
run_step dump-builtin 0 'python device_outputs.py dump export test.npz device-builtin.npz --no-xnnpack'
run_step output0 0 'python device_outputs.py output0 export test.npz --json output0.json'
run_step output0-mc 0 'python device_outputs.py output0 export-mc test.npz --json output0-mc.json'
run_step verify-sparse 0 'edgekit verify export-sparse'
sparse_bench_load="$(cut -d' ' -f1-3 /proc/loadavg)"  # the ratio below is a same-run one
run_step bench-sparse 0 'edgekit bench export-sparse --data test.npz --samples 200 --min-runs 5 --min-time 0.05 --warmup-runs 1 --warmup-time 0 --rounds 2 --no-save --json sparse-bench.json'
run_step dump-sparse 0 'python device_outputs.py dump export-sparse test.npz device-sparse.npz'
run_step dump-sparse-builtin 0 'python device_outputs.py dump export-sparse test.npz device-sparse-builtin.npz --no-xnnpack'
run_step output0-sparse 0 'python device_outputs.py output0 export-sparse test.npz --json output0-sparse.json'
timing device_steps $((SECONDS - t0))

compare_step() {  # NAME HOST.npz DEVICE.npz INT8_ATOL
  local rc
  echo "---- [$target] $1: host $2 against device $3 (int8 within $4)"
  if [ -s "$work/$3" ]; then
    if host "$work/device_outputs.py" compare "$work/$2" "$work/$3" --int8-atol "$4" \
      --json "$work/$1.json"; then rc=0; else rc=$?; fi
  else
    echo "no device dump $3 to compare"; rc=1
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$rc" 0 "$([ "$rc" -eq 0 ] && echo 1 || echo 0)" 0 >>"$steps"
}
compare_step compare host.npz device.npz 1
compare_step compare-builtin host-builtin.npz device-builtin.npz "$builtin_int8_atol"
# float32 files only: rtol 1e-4 / atol 1e-6, as for the main export's float32 files.
compare_step compare-sparse host-sparse.npz device-sparse.npz 0
compare_step compare-sparse-builtin host-sparse-builtin.npz device-sparse-builtin.npz 0

# ---- summary ---------------------------------------------------------------------------------
timing total $((SECONDS - t_start))
status=0
TARGET="$target" WORK="$work" WANT_RUNTIME="$want_runtime" QEMU_CPU_USED="$qemu_cpu" \
UNAME_M="$machine" WHEEL="$wheel_name" N_FILES="$n_files" SPARSE_FILE="$sparse_file" \
DENSE_TWIN="$dense_twin" SPARSE_BENCH_LOAD="$sparse_bench_load" host - <<'PY' || status=$?
import json, os, sys
from pathlib import Path

work = Path(os.environ["WORK"])
target, want = os.environ["TARGET"], os.environ["WANT_RUNTIME"]
steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, rc, expect, ok, seconds = line.split("\t")
    steps.append({"name": name, "exit": int(rc), "expect": expect, "ok": ok == "1",
                  "seconds": int(seconds)})
timings = {k: int(v) for k, v in (l.split("\t") for l in (work / "timings.tsv").read_text().splitlines())}


def load(name):
    try:
        return json.loads((work / name).read_text())
    except (OSError, ValueError):
        return None


bench, cmp_, cmp_builtin = load("out.json"), load("compare.json"), load("compare-builtin.json")
runtime = ((bench or {}).get("machine") or {}).get("runtime")
source = "bench machine.runtime"
if (not runtime or runtime.startswith("unknown")) and ((cmp_ or {}).get("device") or {}).get("runtime"):
    device = cmp_["device"]
    runtime, source = f"{device['runtime']} {device['runtime_version']}", "device_outputs dump"
runtime_ok = bool(runtime) and runtime.split()[0] == want
shown = "unknown"
if runtime:
    name, *rest = runtime.split()
    shown = " ".join([{"litert": "ai-edge-litert"}.get(name, name), *rest])
print(f"---- [{target}] runtime used on the device ({source}): {runtime!r}, expected {want}")
files = (cmp_ or {}).get("files", [])
images = ((cmp_ or {}).get("device") or {}).get("images")
files_builtin = (cmp_builtin or {}).get("files", [])
agree = min((f.get("top1_agreement", 0.0) for f in files + files_builtin), default=0.0)
int8_builtin = [f for f in files_builtin if "mismatches" in f]
int8 = [f for f in files if "mismatches" in f]


def sparse_check():
    """The sparse file on the device: its bench row says the builtin sparse kernel ran, its
    accuracy is its dense twin's, and its raw outputs are the host's (both kernels' dumps)."""
    sparse_file, dense_twin = os.environ["SPARSE_FILE"], os.environ["DENSE_TWIN"]
    bench_sparse = load("sparse-bench.json") or {}
    rows = bench_sparse.get("rows", [])
    mine = [r for r in rows if r.get("file") == sparse_file]
    twins = {r.get("threads"): r for r in rows if r.get("file") == dense_twin}
    problems = []
    sparse_runtime = (bench_sparse.get("machine") or {}).get("runtime") or ""
    if sparse_runtime.split()[:1] != [want]:
        problems.append(f"sparse bench ran on {sparse_runtime or 'an unknown runtime'}, not {want}")
    if not mine:
        problems.append(f"no bench row for {sparse_file}")
    for row in mine:
        at = f"{sparse_file} @{row.get('threads')}t"
        twin = twins.get(row.get("threads")) or {}
        if row.get("status") != "ok" or twin.get("status") != "ok":
            problems.append(f"bench of {at} or its dense twin failed: {row.get('error') or twin.get('error')}")
        if (row.get("sparse") or {}).get("ran") is not True:
            problems.append(f"{at}: the sparse kernel did not run ({(row.get('sparse') or {}).get('summary')})")
        if row.get("accuracy") is None or row.get("accuracy") != twin.get("accuracy"):
            problems.append(f"{at}: accuracy {row.get('accuracy')}, dense twin {twin.get('accuracy')}")
    diffs = {}
    for name in ("compare-sparse", "compare-sparse-builtin"):
        found = [f for f in (load(f"{name}.json") or {}).get("files", []) if f.get("file") == sparse_file]
        if not found or not found[0].get("ok"):
            problems.append(f"{name}: {sparse_file} {'differs from' if found else 'missing against'} the host")
        diffs[name] = found[0].get("max_abs_diff") if found else None
    row = mine[0] if mine else {}
    return {
        "ok": not problems, "file": sparse_file, "dense_twin": dense_twin, "runtime": sparse_runtime,
        "kernel_ran": (row.get("sparse") or {}).get("ran"),
        "kernel": (row.get("sparse") or {}).get("summary"),
        "accuracy": row.get("accuracy"),
        "dense_accuracy": (twins.get(row.get("threads")) or {}).get("accuracy"),
        "accuracy_samples": row.get("accuracy_samples"),
        "top1_agreement_vs_dense": row.get("top1_agreement"),
        "max_abs_diff_vs_host": diffs["compare-sparse"],
        "max_abs_diff_vs_host_builtin": diffs["compare-sparse-builtin"],
        "tolerance": "rtol 1e-4 atol 1e-6 (float32), top-1 agreement 100%",
        # dense p50 / sparse p50 in the same bench run, 1 thread, short settings (2 rounds).
        "speedup_vs_dense_p50": row.get("speedup_vs_float32"),
        "speed_note": (
            f"emulated ({os.environ['QEMU_CPU_USED']} under qemu-user): says nothing about speed"
            if os.environ["QEMU_CPU_USED"]
            else "same-run ratio on this host at short bench settings, load average "
            f"{os.environ['SPARSE_BENCH_LOAD']} (1, 5, 15 min) when it started"
        ),
        "problems": problems,
    }


sparse = sparse_check()
for problem in sparse["problems"]:
    print(f"---- [{target}] sparse: {problem}")
ok = all(s["ok"] for s in steps) and runtime_ok and sparse["ok"]
summary = {
    "target": target, "ok": ok, "runtime": runtime, "expected_runtime": want,
    "runtime_ok": runtime_ok, "uname_m": os.environ["UNAME_M"],
    "qemu_cpu": os.environ["QEMU_CPU_USED"] or None, "wheel": os.environ["WHEEL"],
    "files": int(os.environ["N_FILES"]), "images": images, "steps": steps,
    "compare": cmp_, "compare_builtin": cmp_builtin, "sparse": sparse, "seconds": timings,
}
(work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
if ok:
    def counted(fs):
        return sum(f["mismatches"] for f in fs), sum(f["values"] for f in fs)
    (d1, n1), (d2, n2) = counted(int8), counted(int8_builtin)
    if d1 == d2 == 0:
        exact = ", int8 bit-exact"
    else:
        exact = (f", int8 within 1 step ({d1} of {n1} values differ with the default kernels, "
                 f"{d2} of {n2} with builtin kernels)")
    diff = max(sparse["max_abs_diff_vs_host"], sparse["max_abs_diff_vs_host_builtin"])
    kernel = sparse["kernel"].removeprefix("sparse kernel: ").split(" with ")[0]
    print(f"\ndevice-smoke {target}: OK (runtime {shown}, {len(files)} files, {images} images, "
          f"top-1 agreement {100 * agree:.0f}%{exact}); sparse 1x4 file: builtin sparse kernel "
          f"ran ({kernel}), accuracy {100 * sparse['accuracy']:.1f}% = its dense twin's on "
          f"{sparse['accuracy_samples']} images, outputs within {diff:.2g} of the host's "
          "(default and builtin kernels)")
else:
    bad = [f"{s['name']} exit {s['exit']}" + (" (expected to fail)" if s["expect"] == "fail" else "")
           for s in steps if not s["ok"]]
    if not runtime_ok:
        bad.append(f"runtime {runtime or 'unknown'} (expected {want})")
    bad += [f"sparse: {problem}" for problem in sparse["problems"]]
    print(f"\ndevice-smoke {target}: FAILED ({', '.join(bad)}; runtime {shown}); see {work}/summary.json")
sys.exit(0 if ok else 1)
PY
say "took $((SECONDS - t_start)) s; summary in $work/summary.json"
exit "$status"
