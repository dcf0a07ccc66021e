# shellcheck shell=bash
# Shared by tests/run.sh and tests/demo.sh (sourced, not run): the Debian 12 packages Sluice needs
# to build and test, and the configure/build steps both scripts use.

SLUICE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

SLUICE_PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format
  libboost-dev libssl-dev libspdlog-dev libfmt-dev prometheus-cpp-dev libtoml11-dev
  catch2 libpq-dev openssl
  postgresql-15 postgresql-client-15 python3-psycopg python3-pytest
  python3-asyncpg python3-prometheus-client python3-yaml chromium fonts-dejavu-core
  default-jdk-headless libpostgresql-jdbc-java ruby-pg
)

# Prints the packages of SLUICE_PACKAGES that are not installed, one per line.
sluice_missing_packages() {
  local package
  for package in "${SLUICE_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
      echo "$package"
    fi
  done
}

# Installs missing packages when root; otherwise names them and exits 1 (we never sudo).
sluice_ensure_packages() {
  local missing
  missing=$(sluice_missing_packages | tr '\n' ' ')
  missing=${missing% }
  if [[ -z "$missing" ]]; then
    sluice_ensure_node_modules
    return 0
  fi
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "Missing Debian packages: $missing" >&2
    echo "Install them as root:  apt-get install -y $missing" >&2
    exit 1
  fi
  echo "Installing missing Debian packages: $missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086  # word splitting into package names is intended
  apt-get install -y --no-install-recommends $missing
  sluice_ensure_node_modules
}

# The Node.js driver test's packages (tests/integration/node: exact versions from its
# package-lock.json, from the npm registry) with the machine's node and npm. Does nothing without
# them (that test then skips), or when node_modules is newer than the lock file. Quiet; a failure
# is only reported, since the test runs `npm ci` itself when node_modules is missing.
sluice_ensure_node_modules() {
  local dir="$SLUICE_ROOT/tests/integration/node"
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || return 0
  [[ -f "$dir/package-lock.json" ]] || return 0
  [[ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]] && return 0
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
    echo "npm ci in tests/integration/node failed; the Node.js driver test will retry it" >&2
}

# sluice_configure BUILD_DIR [CMAKE_ARGS...]: Ninja, RelWithDebInfo, warnings are errors.
sluice_configure() {
  local build_dir=$1
  shift
  # A build directory made with another generator cannot be reconfigured for Ninja; CMake's
  # advice is to drop its cache (the build products are regenerated anyway).
  if [[ -f "$build_dir/CMakeCache.txt" ]] &&
     ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$build_dir/CMakeCache.txt"; then
    echo "$build_dir was configured with another generator; clearing its CMake cache" >&2
    rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
  fi
  cmake -S "$SLUICE_ROOT" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DSLUICE_WERROR=ON "$@"
}

# sluice_compile BUILD_DIR [BUILD_ARGS...], e.g. --target sluice. Two jobs: C++20 with Boost.Asio
# coroutines needs about 1 GB per compiler process.
sluice_compile() {
  local build_dir=$1
  shift
  cmake --build "$build_dir" -j2 "$@"
}
