"""Copy a wheel without the files under some folders, its RECORD rewritten to match (a wheel lists every file it
holds). pyautoattack's wheel carries a 44 MB examples/ folder that nothing imports: the GPU machine's wheel bundle
is lighter without it.

Usage: python scripts/repack_wheel.py WHEEL --drop pyautoattack/examples/ --out DIR
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path


def repack(wheel: Path, drop: list[str], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel.name
    if target.resolve() == wheel.resolve():
        raise SystemExit(f"repack_wheel: --out {out_dir} holds {wheel.name} itself; choose another folder")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in source.infolist():
            if any(item.filename.startswith(prefix) for prefix in drop):
                continue
            data = source.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not any(line.startswith(p) for p in drop)).encode()
            copy.writestr(item, data)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--drop", action="append", required=True, help="a folder inside the wheel, e.g. pkg/examples/")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(repack(args.wheel, [d.rstrip("/") + "/" for d in args.drop], args.out))


if __name__ == "__main__":
    main()
