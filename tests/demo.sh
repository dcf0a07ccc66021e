#!/usr/bin/env bash
# THE demo command (README): installs missing Debian packages (as root), builds sluice, starts a
# throwaway PostgreSQL 15 and Sluice in front of it (the example config, pointed at that server),
# prints the psql command to connect, and stays in the foreground until Ctrl-C; then it stops
# both and removes their temporary directories.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=support/deps.sh
source "$here/support/deps.sh"

sluice_ensure_packages
sluice_configure "$SLUICE_ROOT/build"
sluice_compile "$SLUICE_ROOT/build" --target sluice

# exec: Ctrl-C and SIGTERM go straight to demo.py, which cleans up in order.
exec /usr/bin/python3 "$here/support/demo.py" --sluice "$SLUICE_ROOT/build/sluice"
