"""411 status --master URL: which node holds which index version, and who lags.

Exit codes: 0 every node seen in the window is current or behind for less than the
threshold; 1 some node is behind for longer; 2 usage; 3 the master could not be asked.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from ..cli.common import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, fail

PROG = "411 status"
EXIT_UNKNOWN = 3


def status_url(master: str) -> str:
    u = urlsplit(master if "://" in master else f"http://{master}")
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ValueError(f"master {master!r} is not an http:// URL")
    return f"{u.scheme}://{u.netloc}/status"


def duration(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def table(st: dict) -> tuple[list[str], list[dict]]:
    """Rows behind first (longest lag first), then the rest by name; and the rows."""
    rows = sorted(st["nodes"], key=lambda r: (not r["behind"], -r["lag_s"], r["node"]))
    now = st["now"]
    out = [("NODE", "VERSION", "LAST SEEN", "BEHIND FOR")]
    for r in rows:
        out.append((r["node"], "-" if r["version"] is None else str(r["version"]),
                    duration(now - r["last_seen"]) + " ago",
                    duration(r["lag_s"]) if r["behind"] else "-"))
    widths = [max(len(row[i]) for row in out) for i in range(4)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in out], rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description="Show which nodes hold which index version.")
    p.add_argument("--master", required=True, help="fileserver URL, e.g. http://frontend:8411/411.d/")
    p.add_argument("--threshold-s", type=float, default=600.0,
                   help="a node behind for longer than this fails the check (default 600)")
    p.add_argument("--window-s", type=float, default=3600.0,
                   help="only nodes seen within this many seconds count (default 3600)")
    p.add_argument("--timeout-s", type=float, default=10.0, help="HTTP timeout (default 10)")
    p.add_argument("--json", action="store_true", help="print the server's JSON instead of a table")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        url = status_url(a.master)
    except ValueError as e:
        return fail(PROG, str(e), EXIT_USAGE)
    try:
        with urllib.request.urlopen(url, timeout=a.timeout_s) as r:
            st = json.loads(r.read(64 * 1024 * 1024))
        if not isinstance(st, dict) or not isinstance(st.get("nodes"), list):
            raise ValueError("not a fileserver status document")
    except urllib.error.HTTPError as e:
        return fail(PROG, f"{url}: HTTP {e.code}", EXIT_UNKNOWN)
    except (urllib.error.URLError, OSError) as e:
        return fail(PROG, f"{url}: {getattr(e, 'reason', e)}", EXIT_UNKNOWN)
    except ValueError as e:
        return fail(PROG, f"{url}: bad answer: {e}", EXIT_UNKNOWN)
    lines, rows = table(st)
    if a.json:
        print(json.dumps(st, indent=2))
    else:
        print(f"index version {st['index_version']}, {st['nodes_seen_24h']} nodes seen in 24 h")
        print("\n".join(lines))
    late = [r["node"] for r in rows
            if r["behind"] and r["lag_s"] > a.threshold_s and st["now"] - r["last_seen"] <= a.window_s]
    if late:
        return fail(PROG, f"{len(late)} node(s) behind for more than {duration(a.threshold_s)}: "
                    f"{', '.join(late[:20])}{' ...' if len(late) > 20 else ''}", EXIT_REFUSED)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
