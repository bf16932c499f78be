#!/usr/bin/env bash
# Installs Debian's dataset-fashion-mnist (real Fashion-MNIST IDX files) where it is missing and possible.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "Fashion-MNIST not found at $dir and apt-get is unavailable: download the four IDX files of" \
       "Fashion-MNIST into a folder and pass it as the dataset root (root: DIR)." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "Fashion-MNIST not found at $dir; install it as root: apt-get install dataset-fashion-mnist" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null 2>&1
  $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null
}
[ -f "$dir/train-images-idx3-ubyte.gz" ] || { echo "installing dataset-fashion-mnist failed" >&2; exit 1; }
