#!/usr/bin/env bash
# System packages the test suite needs besides Fashion-MNIST: Debian's openssh-server (the
# tests of `edgekit push` / `bench --on` start their own sshd on 127.0.0.1; the system's sshd
# service is neither configured nor needed). Needs root or sudo; does nothing when present.
set -euo pipefail
if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq openssh-server openssh-client
