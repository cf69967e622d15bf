"""Print docs/configuration.md's config reference (markdown) from schemas/config.schema.yaml: the schema is the
documentation.

Usage: python scripts/config_reference.py [--check docs/configuration.md]   (--check: exit 1 if its copy is stale)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def _type(node: dict, defs: dict) -> str:
    if "$ref" in node:
        return _type(defs[node["$ref"].split("/")[-1]], defs)
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(_type(option, defs) for option in node["oneOf"])
    kind = node.get("type", "object")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    bounds = [f"{symbol} {node[key]}" for key, symbol in
              (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
              if key in node]
    if kind == "array" and "items" in node:
        kind = f"list of {_type(node['items'], defs)}"
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _rows(properties: dict, defs: dict, prefix: str = "") -> list[str]:
    rows = []
    for key, node in properties.items():
        resolved = defs[node["$ref"].split("/")[-1]] if "$ref" in node else node
        default = f"`{resolved['default']}`" if "default" in resolved else ""
        description = resolved.get("description", "")
        rows.append(f"| `{prefix}{key}` | {_type(node, defs)} | {default} | {description} |")
        if prefix == "" and key == "artefacts":
            grid = defs["grid"]["properties"]
            rows += _rows(grid, defs, prefix="artefacts.<fig1..fig7, table1, ablation_schedule>.")
            rows += _rows(defs["data_artefact"]["properties"], defs, prefix="artefacts.<fig8, table2>.")
            rows += _rows(defs["toy"]["properties"], defs, prefix="artefacts.toy.")
    return rows


def reference() -> str:
    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += _rows(schema["properties"], schema["$defs"])
    return "\n".join(lines)


def main() -> int:
    text = reference()
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        readme = Path(sys.argv[2]).read_text()
        current = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip() if BEGIN in readme else ""
        if current != text:
            print(f"{sys.argv[2]}: the config reference is stale; regenerate it with scripts/config_reference.py")
            return 1
        return 0
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
