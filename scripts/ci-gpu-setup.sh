#!/usr/bin/env bash
# Gives a GPU-less Debian 12 machine (CI, a developer box) a WebGPU adapter for the `webgpu` package
# (Dawn for Node), so test/webgpu-*.test.ts run instead of skipping.
#
# Primary: Vulkan on lavapipe (Mesa's CPU Vulkan driver). Bookworm's own Mesa 22 is too old for Dawn;
# Mesa 25 from bookworm-backports works. Backports is enabled by appending `bookworm-backports` to the
# Suites of the system's existing Debian source entry (the one whose Suites are "bookworm
# bookworm-updates"), so no repository address lives in this project.
# Fallback: Dawn's OpenGL ES backend on the stock Mesa EGL (EGL_PLATFORM=surfaceless; the device
# wrapper in src/kernels/webgpu/device.ts tries it when Vulkan gives no adapter).
#
# Idempotent: when lavapipe from backports is already installed it only probes (about a second).
# Needs root (CI runs as root). Exits non-zero only if, after all that, Node still finds no adapter.
set -uo pipefail
cd "$(dirname "$0")/.."

log() { echo "ci-gpu-setup: $*" >&2; }
start=$(date +%s)
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

probe() {
  # Prints the adapter WebGPU gets through our own device wrapper (Vulkan first, then GL ES).
  npx tsx scripts/webgpu-probe.ts 2>&1 | grep -v "^Warning: maxDynamic" >&2
}

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'
}

have_vulkan() {
  local major
  major=$(mesa_major)
  [ -n "$major" ] && [ "$major" -ge 24 ] && dpkg-query -W -f='${Status}' libvulkan1 2>/dev/null | grep -q "ok installed"
}

enable_backports() {
  local src=/etc/apt/sources.list.d/debian.sources
  if [ ! -f "$src" ]; then
    log "$src not found: cannot enable bookworm-backports"
    return 1
  fi
  if grep -Eq '^Suites:.*\bbookworm-backports\b' "$src"; then return 0; fi
  if ! grep -Eq '^Suites:[[:space:]]*bookworm bookworm-updates[[:space:]]*$' "$src"; then
    log "no 'Suites: bookworm bookworm-updates' entry in $src"
    return 1
  fi
  $SUDO sed -i -E 's/^(Suites:[[:space:]]*bookworm bookworm-updates)[[:space:]]*$/\1 bookworm-backports/' "$src"
  log "enabled bookworm-backports in $src"
}

install_vulkan() {
  enable_backports || return 1
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || return 1
  $SUDO apt-get install -y -qq -t bookworm-backports --no-install-recommends mesa-vulkan-drivers libvulkan1 \
    >/dev/null || return 1
}

install_gles() {
  export DEBIAN_FRONTEND=noninteractive
  if dpkg-query -W -f='${Status}' libegl-mesa0 2>/dev/null | grep -q "ok installed" &&
    dpkg-query -W -f='${Status}' libegl1 2>/dev/null | grep -q "ok installed"; then
    return 0
  fi
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq --no-install-recommends libegl1 libegl-mesa0 libgles2 >/dev/null
}

if have_vulkan; then
  log "lavapipe (Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)) already installed"
elif install_vulkan && have_vulkan; then
  log "installed Mesa $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) (lavapipe) from bookworm-backports"
else
  log "Vulkan from bookworm-backports failed; installing the OpenGL ES fallback (stock Mesa EGL)"
  install_gles || log "the OpenGL ES fallback packages did not install either"
fi

if probe; then
  log "WebGPU adapter ready ($(($(date +%s) - start)) s)"
else
  log "no WebGPU adapter after setup: test/webgpu-*.test.ts would skip; failing instead"
  exit 1
fi
