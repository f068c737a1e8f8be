"""`sparsey-plugins`: every registered component by kind, with the package it came from.

The first thing to run after `pip install`ing a plugin: it shows whether the entry point was
found, what it registered, which config options it ships and, if it broke, why.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import (
    KINDS,
    Registry,
    config_options,
    plugin_config_dirs,
    plugin_manager,
)


def collect() -> dict[str, Any]:
    """The listing as data; a failed plugin is listed, a clash or bad hook raises."""
    pm, failed = plugin_manager()
    registry = Registry(pm, failed)
    return {
        "plugins": registry.plugin_names(),
        "components": {
            kind: [{"name": c.name, "package": c.source, "description": c.description}
                   for c in sorted(registry.components[kind].values(), key=lambda c: c.name)]
            for kind in KINDS
        },
        "config_dirs": [
            {"package": source, "path": path,
             "options": {g: sorted(o) for g, o in sorted(config_options(path, []).items()) if o}}
            for source, path in plugin_config_dirs(pm)
        ],
        "failed": failed,
    }


def render(data: dict[str, Any]) -> str:
    """Plain text: one section per kind, then plugin config options and failures."""
    rows = [c for cs in data["components"].values() for c in cs]
    w_name = max((len(c["name"]) for c in rows), default=4)
    w_pkg = max((len(c["package"]) for c in rows), default=7)
    lines = [f"plugins loaded: {', '.join(data['plugins'])}"]
    for kind, comps in data["components"].items():
        lines.append(f"\n{kind}s")
        for c in comps:
            lines.append(f"  {c['name']:<{w_name}}  {c['package']:<{w_pkg}}  {c['description']}")
        if not comps:
            lines.append("  (none)")
    if data["config_dirs"]:
        lines.append("\nconfig options from plugins")
        for d in data["config_dirs"]:
            shipped = "; ".join(f"{g}={', '.join(o)}" for g, o in d["options"].items())
            lines.append(f"  {d['package']}: {shipped or '(none)'}  [{d['path']}]")
    if data["failed"]:
        lines.append("\nfailed to import")
        for name, err in data["failed"].items():
            lines.append(f"  {name}: {err}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsey-plugins",
        description="List sparsey-hydra's registered layers, metrics, transforms, datasets and "
                    "stores with the package each came from (built-ins and installed plugins).")
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")
    args = parser.parse_args(argv)
    try:
        data = collect()
    except SparseyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(data, indent=2) if args.json else render(data))
    if data["failed"]:
        name = next(iter(data["failed"]))
        print(f"error: plugin '{name}' failed to import; fix it or uninstall it "
              f"(pip uninstall {name.split()[0]})", file=sys.stderr)
        return 2
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()

