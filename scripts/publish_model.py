"""Publish a trained model file into the zoo: copy it to pretrained/, update its card.

    python scripts/publish_model.py mnist_dbm runs/dbm/model.keras
    python scripts/publish_model.py mnist_dbm --metric test_elbo -86.1 nats \\
        "python scripts/eval_dbm_ais.py pretrained/mnist_dbm.keras --runs 2"

Copies the file (to a temporary name, then renamed) as the card's first weight file,
writes its size and full sha256 into the card (zoo/NAME.json) and pretrained/SHA256SUMS,
and optionally adds or replaces a measured metric (name, value, unit, command). The
card is validated before it is written.
"""

import argparse
import json
import shutil
from pathlib import Path

from tfboltz import zoo
from tfboltz.data import sha256

ROOT = Path(__file__).resolve().parent.parent


def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("file", nargs="?", help="the trained .keras file to publish")
    p.add_argument("--metric", nargs=4, action="append", default=[],
                   metavar=("NAME", "VALUE", "UNIT", "COMMAND"))
    args = p.parse_args(argv)
    card_path = ROOT / "zoo" / f"{args.name}.json"
    card = json.loads(card_path.read_text())
    if args.file:
        entry = card["files"][0]
        dest = ROOT / "pretrained" / entry["name"]
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(args.file, tmp)
        tmp.replace(dest)
        entry["sha256"], entry["size"] = sha256(dest), dest.stat().st_size
        sums = ROOT / "pretrained" / "SHA256SUMS"
        lines = [ln for ln in sums.read_text().splitlines() if not ln.endswith(f"  {dest.name}")]
        lines.append(f"{entry['sha256']}  {dest.name}")
        write_atomic(sums, "\n".join(sorted(lines, key=lambda ln: ln.split()[1])) + "\n")
    for name, value, unit, command in args.metric:
        card["metrics"] = [m for m in card["metrics"] if m["name"] != name]
        card["metrics"].append({"name": name, "value": float(value), "unit": unit,
                                "command": command})
    zoo.validate_card(card)
    write_atomic(card_path, json.dumps(card, indent=2) + "\n")
    print(f"{args.name}: card updated" + (f", {dest} {entry['size']} bytes" if args.file else ""))


if __name__ == "__main__":
    main()
