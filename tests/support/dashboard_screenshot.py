#!/usr/bin/python3
"""Screenshot of the dashboard page during a simulated overload, for the docs.

Serves src/http/dashboard.html with the fake /status of tests/support/browser.py, scripted with
browser.overload_scenario() (five minutes: a batch flood from 90 s saturates main/batch while
main/critical keeps its reserved slots; server "reports" loses its database at 230 s and its
breaker opens), lets headless Chromium poll through all of it on virtual time, and writes a
1280x800 PNG.

Usage (from anywhere; needs Debian's chromium):
  /usr/bin/python3 tests/support/dashboard_screenshot.py [--out docs/img/dashboard-overload.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import browser  # noqa: E402  (needs the sys.path entry above)

MAX_BYTES = 300_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=browser.REPO_ROOT / "docs" / "img" / "dashboard-overload.png",
                        help="PNG to write (default: docs/img/dashboard-overload.png)")
    parser.add_argument("--seconds", type=int, default=300, help="scenario length (default 300)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()

    if browser.find_chromium() is None:
        print("headless Chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 1
    script = browser.overload_scenario(args.seconds)
    with browser.FakeStatusServer(script) as server:
        html = browser.dump_dom(server.url, virtual_ms=(len(script) + 5) * 1000, timeout=300,
                                window_size=(args.width, args.height), screenshot_to=args.out)
        polls = len(server.served)
    problems = browser.field_mismatches(html, script[-1])
    if polls < len(script) or problems:
        print(f"the page did not reach the end of the scenario ({polls} polls of {len(script)}):",
              *problems, sep="\n", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes, {polls} polls)")
    if size > MAX_BYTES:
        print(f"warning: larger than {MAX_BYTES} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
