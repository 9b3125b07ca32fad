"""A moderator's page scan: faces checked per second and the longest main-thread task, on a page of profiles.

    python benchmarks/bench_page_scan.py [--images 40] [--side 256] [--shown 160] [--data ../shared/data]
        [--browsers chromium,firefox]

Builds a page of --images profile cards (test-split photos of the data folder, centre-cropped to
--side px JPEGs, shown at --shown px with a name and a line of text; synthetic images when the data is
missing), loads the built extension with its shipped model in headless Chromium (extension/test/scan.mjs)
and then in headless Firefox ESR (extension/test/firefox.mjs), calls the handler of "Check every face on
this page", then scrolls to the bottom a window at a time, each time until what came into view is
checked. Prints, per browser, the images checked per second (from the handler's call to the last
verdict, first check's model loading included), the time to the images in view, the longest piece of
the extension's own work on the page's main thread (one verdict drawn, one batch of observer entries),
as page-scan.js measures it, and in Chromium the page's long tasks (PerformanceObserver "longtask": any
task of the page's main thread over 50 ms; the page runs no script of its own; Firefox has no Long
Tasks API). Needs `bash .ci/setup --test`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "extension"
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_extension import pick_images  # noqa: E402  (a sibling script, not a package)


def profile_page(names: list[str], shown: int) -> str:
    cards = "".join(f'<div class="card"><img src="{name}" width="{shown}" height="{shown}" style="object-fit: cover">'
                    f"<p><b>Member {index}</b>, {20 + index % 30} · {index % 9 + 1} km away</p>"
                    f"<p>Likes hiking, films and long dinners.</p></div>" for index, name in enumerate(names))
    return ("<!doctype html><style>body{font:14px sans-serif;margin:16px} .grid{display:grid;"
            f"grid-template-columns:repeat(auto-fill,{shown + 60}px);gap:24px}} p{{margin:4px 0}}</style>"
            f"<h1>Profiles near you</h1><div class=\"grid\">{cards}</div>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--side", type=int, default=256, help="each photo's size in pixels")
    parser.add_argument("--shown", type=int, default=160, help="each photo's size on the page, CSS px")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--browsers", default="chromium,firefox", help="which builds to run, in this order")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as site:
        names = pick_images(Path(args.data), args.images, Path(site), args.side)
        (Path(site) / "profiles.html").write_text(profile_page(names, args.shown))
        runs = {browser: scan(browser, site) for browser in args.browsers.split(",")}
    metadata = json.loads((EXTENSION / "model" / "metadata.json").read_text())
    print(f"model {metadata['name']} {metadata['version']}; {args.images} profile photos ({args.side} px, shown at "
          f"{args.shown} px)")
    for browser, run in runs.items():
        final = run["final"]
        checked = len(final["checked"])
        print(f"--- {browser}: {len(run['first']['checked'])} in view at the start")
        print(f"checked: {checked} ({final['counts']}), {final['waiting']} waiting")
        print(f"images in view checked after {run['firstMs'] / 1000:.1f} s; all {checked} after "
              f"{run['seconds']:.1f} s: {checked / run['seconds']:.1f} faces checked per second")
        if "longTasks" in run:
            long_tasks = run["longTasks"]
            print(f"page long tasks (> 50 ms, any cause): {len(long_tasks)}"
                  + (f", longest {max(long_tasks):.0f} ms" if long_tasks else ""))
        longest = final["longestTaskMs"]
        print(f"longest piece of the extension's work on the page: {longest:.1f} ms "
              f"({final['longestTask']}; target: at most 50 ms): {'met' if longest <= 50 else 'NOT met'}")
    return 0


def scan(browser: str, site: str) -> dict:
    """One browser's scan of site/profiles.html with the built extension: its driver's JSON."""
    node = shutil.which("node")
    if browser == "chromium":
        executable = shutil.which("chromium") or "/usr/bin/chromium"
        build = EXTENSION / "dist" / "chrome"
        script, request = "scan.mjs", {"chromium": executable, "page": "profiles.html"}
    else:
        executable = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
        build = EXTENSION / "dist" / "firefox"
        script, request = "firefox.mjs", {"firefox": executable, "checks": [], "scan": {"page": "profiles.html"}}
    if node is None or not Path(executable).exists() or not (build / "manifest.json").is_file():
        sys.exit(f"error: needs node, {browser} and the built extension: run bash .ci/setup --test")
    result = subprocess.run([node, str(EXTENSION / "test" / script),
                             json.dumps({**request, "extensionDir": str(build), "siteDir": site})],
                            cwd=EXTENSION, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: the {browser} run failed:\n{result.stderr}")
    run = json.loads(result.stdout)
    return run.get("scan") or run


if __name__ == "__main__":
    sys.exit(main())
