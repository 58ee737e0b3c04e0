#!/usr/bin/env bash
# Installs everything the pipeline and its tests use on Debian 12: the Go
# module dependencies (into the module cache) and, through the magefile's
# `deps` target, every Debian package (kernel build tools, cross compilers,
# kernel source, QEMU, iPXE, PXELINUX, firmware). Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ] && [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
  apt-get update -q
fi
go mod download
go run mage.go deps
