"""Publish a trained model into the zoo as a preset: weights in pretrained/, card in zoo/.

    python scripts/publish_model.py mnist_dbm runs/dbm/model.keras
    python scripts/publish_model.py mnist_dbm --metric test_elbo -86.1 nats \\
        "python scripts/eval_dbm_ais.py mnist_dbm --runs 2"

MODEL is a run's ``.keras`` file (or anything `tfboltz.zoo.from_preset` takes). Its
variables, without optimizer state, become pretrained/NAME.weights.h5 (written by
`tfboltz.zoo.save_preset` under a temporary name, checked to read back bit for bit,
then renamed), and its Keras config, class, size and full sha256 go into the card
(zoo/NAME.json) and pretrained/SHA256SUMS; a file the card named before under another
name (the ``.keras`` of the older whole-model format) is removed from pretrained/.
Optionally adds or replaces a measured metric (name, value, unit, command). The card
is validated before it is written.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

from tfboltz import zoo

ROOT = Path(__file__).resolve().parent.parent


def write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def update_sha256sums(sums, entry, replaced):
    """Write `entry`'s line into SHA256SUMS in place of those of the names in `replaced`."""
    gone = {entry["name"], *replaced}
    lines = [ln for ln in sums.read_text().splitlines() if ln and ln.split()[1] not in gone]
    lines.append(f"{entry['sha256']}  {entry['name']}")
    write_atomic(sums, "\n".join(sorted(lines, key=lambda ln: ln.split()[1])) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("model", nargs="?",
                   help="the trained model: a run's .keras file, or any preset")
    p.add_argument("--metric", nargs=4, action="append", default=[],
                   metavar=("NAME", "VALUE", "UNIT", "COMMAND"))
    args = p.parse_args(argv)
    card_path = ROOT / "zoo" / f"{args.name}.json"
    card = json.loads(card_path.read_text())
    pretrained = ROOT / "pretrained"
    if args.model:
        before = [entry["name"] for entry in card["files"][:1]]
        model = zoo.from_preset(args.model)
        with tempfile.TemporaryDirectory(prefix=".publish-", dir=pretrained) as tmp:
            card = zoo.save_preset(model, tmp, card)
            entry = card["files"][0]
            os.replace(Path(tmp) / entry["name"], pretrained / entry["name"])
        update_sha256sums(pretrained / "SHA256SUMS", entry, before)
        for name in before:
            if name != entry["name"] and (pretrained / name).is_file():
                (pretrained / name).unlink()
                print(f"{args.name}: removed {pretrained / name}, which the card named before")
    for name, value, unit, command in args.metric:
        card["metrics"] = [m for m in card["metrics"] if m["name"] != name]
        card["metrics"].append({"name": name, "value": float(value), "unit": unit,
                                "command": command})
    zoo.validate_card(card)
    write_atomic(card_path, json.dumps(card, indent=2) + "\n")
    print(f"{args.name}: card updated" + (
        f", {pretrained / entry['name']} {entry['size']:,d} bytes, sha256 {entry['sha256']}"
        if args.model else ""))


if __name__ == "__main__":
    main()
