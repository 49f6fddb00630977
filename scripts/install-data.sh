#!/usr/bin/env bash
# Install Debian's dataset-fashion-mnist (the four IDX files under /usr/share/datasets/fashion-mnist)
# unless Fashion-MNIST is already there. Needs root or sudo; does nothing when the files exist.
set -euo pipefail
# The other system packages of the tests (openssh-server for the fleet tests).
bash "$(dirname "${BASH_SOURCE[0]}")/install-test-deps.sh"
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ] && [ -f "$dir/t10k-labels-idx1-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq dataset-fashion-mnist
