"""The model zoo: presets (model cards with verified weights), listing and loading.

A preset is data, not code, as in keras-hub: a JSON *model card* and a weights file.
The card (in the top-level ``zoo/`` directory, installed as the package data
``tfboltz.zoo_cards``) holds the model's full Keras config and the registered name of
its class, the weight file with its full sha256, the recipe (script + arguments) that
produced it and the metrics it reached. The weights are a ``.weights.h5`` written by
`keras.Model.save_weights` from an uncompiled model: every model variable (the
persistent chains included), no optimizer state. ::

    import tfboltz as tb

    tb.zoo.list_presets()                        # ['cifar10_gbm_dbm', 'mnist_dbm', ...]
    tb.zoo.list_presets(tb.RBM)                  # ['mnist_rbm']
    rbm = tb.zoo.from_preset("mnist_rbm")        # fetched if missing, sha256-verified
    rbm = tb.zoo.from_preset("pretrained/mnist_rbm.weights.h5")   # the same, by path
    untrained = tb.zoo.from_preset("mnist_rbm", load_weights=False)
    tb.zoo.get_card("mnist_rbm")["recipe"]       # {'script': ..., 'args': [...]}
    tb.zoo.save_preset(rbm, "my_preset", card)   # my_preset/NAME.json + NAME.weights.h5

`load(name, pretrained)` is the same call as `from_preset(name, load_weights=pretrained)`.

What `from_preset` takes (the first rule that applies):

1. a registered name (`list_presets()`): its card, and its weight file from the
   weights directory below;
2. a preset directory: the one card in it (a ``.json`` with ``config`` and
   ``registered_name``) and the weight file beside it;
3. a card ``.json`` file: its weight file beside it, else in the weights directory;
4. a ``.weights.h5`` file: its card is ``NAME.json`` beside it, else the registered
   card whose weight file has that name; the file must have the card's sha256;
5. a ``.keras`` file: a whole model, loaded with `keras.saving.load_model` without
   its compile state (no card, no sha256 to check; to resume training from a
   checkpoint with its optimizer state, call `keras.saving.load_model` itself).

Where weight files live (the first rule that applies):

1. the ``cache_dir`` argument of `from_preset`, `load`, `fetch` or `model_path`;
2. the environment variable ``TFBOLTZ_MODELS``;
3. the ``pretrained/`` directory of a source checkout (the directory beside the
   ``tfboltz`` package that holds ``setup.py``), which ships the weight files;
4. ``~/.cache/tfboltz/models``.

A file missing there is read from the package data ``tfboltz.zoo_weights`` of an
installed tfboltz (the published ``.weights.h5`` files), so an installed package loads
its presets offline; only a file found nowhere is downloaded, into that directory.

Downloads come from each file's ``url``; ``TFBOLTZ_BASE_URL`` (or the ``base_url``
argument of `fetch`) replaces everything before the file name, e.g. a mirror or a
local server (an http or https URL). A download goes to a temporary file beside its
destination and is moved into place only once its size and full sha256 match the
card, so an interrupted or corrupt download never leaves a file under the final name.
A download is bounded by the card: it stops as soon as the server announces another
length (``Content-Length``) or sends one byte more than the card's ``size``; and by
time: `fetch`'s ``timeout`` bounds the whole call (connecting, the answer and every
byte), not each read, so a server that sends a byte at a time cannot hold it longer.
Every failure is a `FetchError` naming the model, the file and the cause.

The cards are read once, on first use. An invalid card file leaves only its own
model out: `list_models` warns once, naming the card and what is wrong with it; the
other models list, fetch and load as usual; using the invalid one (`get_card`,
`fetch`, `load`, ...) raises a `ValueError` naming it.

Card schema (every key required; `register` and loading check it):

- ``name`` (str, lower case, ``[a-z0-9_]``, equal to the card's file name),
  ``version`` (str), ``description`` (str);
- ``model_class``: ``"RBM"``, ``"DBM"`` or ``"DBN"``; ``registered_name``: the Keras
  registered name of that class (``"tfboltz>RBM"``), which `from_preset` resolves
  with `keras.saving.get_registered_object`; ``config``: the model's `get_config()`,
  from which the class's `from_config` rebuilds it;
- ``architecture``: the main constructor arguments, for people to read
  (``n_visible``/``n_hidden`` or ``layer_sizes``, equal to the config's; unit types
  by name or as a units config). The arguments it names have the constructor's
  types: sizes and counts (``n_visible``, ``n_hidden``, each of ``layer_sizes``, ``k``,
  ``n_chains``, ...) positive integers, unit types (``visible``, ``hidden``, ``top``)
  a unit type's name or an object with a ``class_name``, flags booleans, rates and
  penalties non-negative numbers, ``seed`` a non-negative integer or null;
- ``preprocessing`` (str): what the model expects its inputs to be;
- ``recipe``: ``{"script": "scripts/NAME.py", "args": [str, ...]}``; the script is a
  relative path inside the repository's ``scripts/`` directory (no absolute path, no
  ``..``, resolving inside ``scripts/``), since ``tfboltz train`` runs it;
- ``files``: list of ``{"name", "sha256" (64 hex digits), "size" (bytes), "url"}``,
  the first one the ``.weights.h5`` file; ``url`` is an http(s) URL ending in the
  file name, or ``""`` for a file with no download location (one that ships with
  tfboltz, or a preset that exists only on disk); ``files`` is empty only when
  ``weights_published`` is false; ``weights_published`` (bool);
- ``parameters`` (int): trainable parameters (weights and biases);
- ``metrics``: list of ``{"name", "value", "unit", "command"}``;
- ``license``, ``date`` (``YYYY-MM-DD``), ``notes`` (str).
"""

import copy
import datetime
import hashlib
import http.client
import importlib.resources
import json
import math
import numbers
import os
import re
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np

CARDS_PACKAGE = "tfboltz.zoo_cards"
WEIGHTS_PACKAGE = "tfboltz.zoo_weights"
MODEL_CLASSES = ("RBM", "DBM", "DBN")
WEIGHTS_SUFFIX = ".weights.h5"
BASE_URL_ENV = "TFBOLTZ_BASE_URL"
MODELS_DIR_ENV = "TFBOLTZ_MODELS"
DEFAULT_CACHE_DIR = Path("~") / ".cache" / "tfboltz" / "models"

_REPO_ROOT = Path(__file__).resolve().parent.parent
_CHUNK_BYTES = 1 << 20
_CARD_KEYS = {
    "name": str, "version": str, "description": str, "model_class": str,
    "registered_name": str, "config": dict, "architecture": dict, "preprocessing": str,
    "recipe": dict, "files": list, "weights_published": bool, "parameters": int,
    "metrics": list, "license": str, "date": str, "notes": str,
}
_FILE_KEYS = {"name": str, "sha256": str, "size": int, "url": str}
_METRIC_KEYS = {"name": str, "value": numbers.Real, "unit": str, "command": str}
_RECIPE_KEYS = {"script": str, "args": list}
_ARCHITECTURE_KEYS = {"RBM": ("n_visible", "n_hidden"), "DBM": ("layer_sizes",),
                      "DBN": ("layer_sizes",)}
_MIN_LAYERS = {"DBM": 3, "DBN": 2}
# The names `tfboltz.units.get` takes (its UNIT_TYPES), written out so that reading the
# cards needs no Keras; a test keeps the two lists equal.
_UNIT_NAMES = ("bernoulli", "binary", "gaussian", "multinomial", "nrelu", "relu", "softmax")
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_REGISTERED_NAME_PATTERN = re.compile(r"[A-Za-z_][\w.]*>([A-Za-z_]\w*)")

_registry = None  # a _Registry, read on first use
_DEFAULT_TIMEOUT = 600.0


class FetchError(RuntimeError):
    """A zoo weight file could not be downloaded, verified or found."""


def _card_error(card_name, message):
    return ValueError(f"Invalid model card '{card_name}': {message}")


def _type_name(kind):
    return {numbers.Real: "a number", dict: "an object", list: "a list", str: "a string",
            bool: "a boolean", int: "an integer"}[kind]


def _check_keys(card_name, where, obj, keys):
    """Check that the dict `obj` has exactly `keys`, each of the given type."""
    if not isinstance(obj, dict):
        raise _card_error(card_name, f"Expected `{where}` to be an object. Received: {obj!r}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise _card_error(card_name, f"missing key(s) {missing} in `{where}`. Expected keys: "
                                     f"{sorted(keys)}. Received: {sorted(obj)}")
    unknown = sorted(set(obj) - set(keys))
    if unknown:
        raise _card_error(card_name, f"unknown key(s) {unknown} in `{where}`. Expected keys: "
                                     f"{sorted(keys)}")
    for key, kind in keys.items():
        value = obj[key]
        # bool is an int subclass in Python, but a flag is never a count or a measure.
        if (kind is not bool and isinstance(value, bool)) or not isinstance(value, kind):
            raise _card_error(card_name, f"Expected `{where}.{key}` to be {_type_name(kind)}. "
                                         f"Received: {key}={value!r}")


def _is_int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_positive_int(value):
    return _is_int(value, 1)


def _is_non_negative_int(value):
    return _is_int(value, 0)


def _is_non_negative_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def _is_optional_number(value):
    return value is None or _is_non_negative_number(value)


def _is_optional_seed(value):
    return value is None or _is_int(value, 0)


def _is_unit_type(value):
    if isinstance(value, dict):
        return isinstance(value.get("class_name"), str) and bool(value["class_name"])
    return isinstance(value, str) and value.lower() in _UNIT_NAMES


def _is_name(value):
    return isinstance(value, str) and bool(value.strip())


def _is_bool(value):
    return isinstance(value, bool)


# The type of each constructor argument an `architecture` may name (other keys are
# free text for people); `layer_sizes` is checked on its own (its length depends on
# the class).
_ARCHITECTURE_TYPES = {
    **dict.fromkeys(("n_visible", "n_hidden", "k", "n_chains", "n_mean_field",
                     "n_temperatures", "visible_copies", "hidden_copies"),
                    (_is_positive_int, "a positive integer")),
    "num_classes": (_is_non_negative_int, "a non-negative integer"),
    **dict.fromkeys(("visible", "hidden", "top"),
                    (_is_unit_type, f"a unit type, one of {list(_UNIT_NAMES)}, or a units "
                                    "config (an object with a `class_name`)")),
    **dict.fromkeys(("learning", "matmul_dtype"), (_is_name, "a non-empty string")),
    **dict.fromkeys(("sample_visible", "sample_hidden", "sample_particles", "centering"),
                    (_is_bool, "a boolean")),
    **dict.fromkeys(("l1", "l2", "dropout", "sparsity_target", "sparsity_cost",
                     "sparsity_damping", "weight_init_std", "mean_field_tol",
                     "centering_rate", "min_beta", "discriminative"),
                    (_is_non_negative_number, "a non-negative number")),
    "max_norm": (_is_optional_number, "a non-negative number or null"),
    "seed": (_is_optional_seed, "a non-negative integer or null"),
}


def _validate_architecture(card_name, model_class, architecture):
    missing = [k for k in _ARCHITECTURE_KEYS[model_class] if k not in architecture]
    if missing:
        raise _card_error(card_name, f"missing key(s) {missing} in `architecture` of a "
                                     f"{model_class}. Received: {sorted(architecture)}")
    if "layer_sizes" in architecture:
        sizes, least = architecture["layer_sizes"], _MIN_LAYERS.get(model_class, 2)
        if not (isinstance(sizes, list) and len(sizes) >= least
                and all(_is_positive_int(n) for n in sizes)):
            raise _card_error(card_name, f"Expected `architecture.layer_sizes` to be a list of "
                                         f"at least {least} positive integers. Received: "
                                         f"layer_sizes={sizes!r}")
    for key, (check, expected) in _ARCHITECTURE_TYPES.items():
        if key in architecture and not check(architecture[key]):
            raise _card_error(card_name, f"Expected `architecture.{key}` to be {expected}. "
                                         f"Received: {key}={architecture[key]!r}")


def _validate_recipe_script(card_name, script):
    """A relative path inside the repository's scripts/ (`tfboltz train` runs it)."""
    parts = script.split("/")
    plain = (len(parts) >= 2 and parts[0] == "scripts" and "\\" not in script
             and "\0" not in script and not any(p in ("", ".", "..") for p in parts)
             and parts[-1].endswith(".py") and parts[-1] != ".py")
    if plain:
        scripts = (_REPO_ROOT / "scripts").resolve()
        try:
            plain = (_REPO_ROOT / script).resolve().is_relative_to(scripts)
        except (OSError, RuntimeError):  # a symlink loop
            plain = False
    if not plain:
        raise _card_error(card_name, "Expected `recipe.script` to be a path like "
                                     "'scripts/NAME.py' inside the repository's scripts/ "
                                     "directory (relative, without '..', ending in .py). "
                                     f"Received: script={script!r}")


def validate_card(card):
    """Check a model card against the schema and return it unchanged.

    Args:
        card: the card, a dict parsed from JSON (see the module docstring).

    Returns:
        `card`.

    Raises:
        ValueError: naming the card and the missing or bad key.
    """
    card_name = card.get("name", "<unnamed>") if isinstance(card, dict) else "<not a dict>"
    _check_keys(card_name, "card", card, _CARD_KEYS)
    if not _NAME_PATTERN.fullmatch(card["name"]):
        raise _card_error(card_name, "Expected `name` to be lower case letters, digits and "
                                     f"underscores, starting with a letter. Received: "
                                     f"name={card['name']!r}")
    for key in ("version", "description", "license"):
        if not card[key].strip():
            raise _card_error(card_name, f"Expected `{key}` to be a non-empty string. "
                                         f"Received: {key}={card[key]!r}")
    if card["model_class"] not in MODEL_CLASSES:
        raise _card_error(card_name, f"Expected `model_class` to be one of {list(MODEL_CLASSES)}."
                                     f" Received: model_class={card['model_class']!r}")
    match = _REGISTERED_NAME_PATTERN.fullmatch(card["registered_name"])
    if match is None or match.group(1) != card["model_class"]:
        raise _card_error(card_name, "Expected `registered_name` to be the Keras registered name "
                                     f"of the class, 'PACKAGE>{card['model_class']}'. Received: "
                                     f"registered_name={card['registered_name']!r}")
    _validate_architecture(card_name, card["model_class"], card["architecture"])
    for key in _ARCHITECTURE_KEYS[card["model_class"]]:
        if card["config"].get(key) != card["architecture"][key]:
            raise _card_error(card_name, f"Expected `config.{key}` to equal `architecture.{key}` "
                                         f"({card['architecture'][key]!r}). Received: "
                                         f"{key}={card['config'].get(key)!r}")
    _check_keys(card_name, "recipe", card["recipe"], _RECIPE_KEYS)
    _validate_recipe_script(card_name, card["recipe"]["script"])
    args = card["recipe"]["args"]
    if not all(isinstance(a, str) for a in args):
        raise _card_error(card_name, f"Expected `recipe.args` to be a list of strings. "
                                     f"Received: args={args!r}")
    if card["parameters"] < 0:
        raise _card_error(card_name, "Expected `parameters` to be a non-negative integer. "
                                     f"Received: parameters={card['parameters']!r}")
    try:
        datetime.date.fromisoformat(card["date"])
    except ValueError:
        raise _card_error(card_name, "Expected `date` as YYYY-MM-DD. Received: "
                                     f"date={card['date']!r}") from None
    for i, metric in enumerate(card["metrics"]):
        _check_keys(card_name, f"metrics[{i}]", metric, _METRIC_KEYS)
    _validate_files(card_name, card["files"], card["weights_published"])
    return card


def _validate_files(card_name, files, weights_published):
    if weights_published and not files:
        raise _card_error(card_name, "Expected at least one entry in `files` when "
                                     "`weights_published` is true. Received: files=[]")
    seen = set()
    for i, entry in enumerate(files):
        _check_keys(card_name, f"files[{i}]", entry, _FILE_KEYS)
        name = entry["name"]
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise _card_error(card_name, f"Expected `files[{i}].name` to be a plain file name. "
                                         f"Received: name={name!r}")
        if name in seen:
            raise _card_error(card_name, f"duplicate file name {name!r} in `files`")
        seen.add(name)
        if not _SHA256_PATTERN.fullmatch(entry["sha256"]):
            raise _card_error(card_name, f"Expected `files[{i}].sha256` to be 64 lower-case hex "
                                         f"digits. Received: sha256={entry['sha256']!r}")
        if entry["size"] < 0:
            raise _card_error(card_name, f"Expected `files[{i}].size` to be a non-negative "
                                         f"integer. Received: size={entry['size']!r}")
        url = entry["url"]
        if url and (not url.startswith(("https://", "http://")) or not url.endswith("/" + name)):
            raise _card_error(card_name, f"Expected `files[{i}].url` to be an http(s) URL ending "
                                         f"in '/{name}' (or '' for a file that is not online). "
                                         f"Received: url={url!r}")
    if files and not files[0]["name"].endswith(WEIGHTS_SUFFIX):
        raise _card_error(card_name, f"Expected the first entry of `files` to be the "
                                     f"`{WEIGHTS_SUFFIX}` weights file. Received: "
                                     f"name={files[0]['name']!r}")


def _card_sources():
    """The card files: the installed package data, else a checkout's zoo/ directory."""
    try:
        root = importlib.resources.files(CARDS_PACKAGE)
        sources = [entry for entry in root.iterdir() if entry.name.endswith(".json")]
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        sources = []
    if not sources and (_REPO_ROOT / "zoo").is_dir():
        sources = list((_REPO_ROOT / "zoo").glob("*.json"))
    return sorted(sources, key=lambda entry: entry.name)


def _read_card(source):
    """Parse and validate the card file `source` (a path or an importlib resource).

    Raises:
        ValueError: naming the card (its file's stem) and what is wrong with it: a
            file that cannot be read, is not JSON or fails `validate_card`.
    """
    stem = source.name[: -len(".json")]
    try:
        card = json.loads(source.read_text(encoding="utf-8"))
    except OSError as err:
        raise _card_error(stem, f"cannot read {source.name} ({err})") from err
    except (ValueError, RecursionError) as err:  # RecursionError: nested too deep
        raise _card_error(stem, f"{source.name} is not valid JSON ({err})") from err
    if not isinstance(card, dict):
        raise _card_error(stem, f"Expected {source.name} to hold a JSON object. Received: "
                                f"{type(card).__name__}")
    return validate_card(card)


class _Registry:
    """The zoo's cards: the valid ones by name (`register` adds to them), and the error
    of each invalid card file by its stem (left out of the zoo)."""

    def __init__(self):
        self.cards, self.invalid = {}, {}
        for source in _card_sources():
            stem = source.name[: -len(".json")]
            try:
                card = _read_card(source)
                if card["name"] != stem:
                    raise _card_error(stem, f"Expected `name` to match the file name "
                                            f"{source.name}. Received: name={card['name']!r}")
            except ValueError as err:
                self.invalid[stem] = f"{err} (card file: {source})"
                continue
            self.cards[stem] = card
        self.unwarned = set(self.invalid)  # the invalid cards not yet warned about


def _registered():
    global _registry
    if _registry is None:
        _registry = _Registry()
    return _registry


def _cards():
    return _registered().cards


def _check_valid(name):
    """Raise the error of an invalid card file named `name`, if there is one."""
    invalid = _registered().invalid
    if isinstance(name, str) and name in invalid:
        raise ValueError(f"{invalid[name]}. The model '{name}' is left out of the zoo until "
                         "its card is fixed; the other models are unaffected.")


def _warn_invalid_cards():
    registry = _registered()
    for name in sorted(registry.unwarned):
        warnings.warn(f"Left the model '{name}' out of the zoo: {registry.invalid[name]}",
                      stacklevel=3)
    registry.unwarned.clear()


def list_models():
    """The names of the registered models, sorted.

    A card file that is invalid is left out; the first call after the cards are read
    warns (a `UserWarning`) once for each such card, naming it and its problem.

    Returns:
        list of str, e.g. ``['cifar10_gbm_dbm', 'mnist_dbm', 'mnist_rbm']``.
    """
    _warn_invalid_cards()
    return sorted(_cards())


def get_card(name):
    """The model card of a zoo model (a copy: editing it does not change the registry).

    Args:
        name: a name from `list_models()`.

    Returns:
        dict, the card (see the module docstring for its keys).

    Raises:
        ValueError: unknown name (the message lists the known names), or the name of
            a card file that is invalid (the message names its problem).
    """
    _check_valid(name)
    cards = _cards()
    if name not in cards:
        raise ValueError(f"Unknown zoo model. Expected `name` to be one of {list_models()}. "
                         f"Received: name={name!r}")
    return copy.deepcopy(cards[name])


def register(card):
    """Add a model card to the registry after validating it.

    Example::

        tb.zoo.register({"name": "my_rbm", "model_class": "RBM", ...})
        model = tb.zoo.load("my_rbm")

    Args:
        card: a dict with every key of the schema (see the module docstring). It is
            copied; later edits to `card` do not reach the registry. It may take the
            name of a card file that is invalid (left out of the zoo).

    Raises:
        ValueError: the card is invalid, not JSON-serialisable, or its name is
            already registered.
    """
    try:
        card = json.loads(json.dumps(card))
    except (TypeError, ValueError) as err:
        raise ValueError(f"Expected a model card made of JSON values. Received: {err}") from err
    validate_card(card)
    cards = _cards()
    if card["name"] in cards:
        raise ValueError(f"Model '{card['name']}' is already registered; choose another name or "
                         f"call `tfboltz.zoo.unregister('{card['name']}')` first")
    cards[card["name"]] = card
    # A valid card takes the place of an invalid card file of the same name.
    _registered().invalid.pop(card["name"], None)
    _registered().unwarned.discard(card["name"])


def unregister(name):
    """Remove a model card from the registry (for cards added with `register`).

    Args:
        name: a registered name.

    Raises:
        ValueError: unknown name.
    """
    get_card(name)
    del _cards()[name]


def weights_dir(cache_dir=None):
    """The directory that holds (or will hold) the zoo's weight files.

    The first of: `cache_dir`; ``$TFBOLTZ_MODELS``; a source checkout's
    ``pretrained/`` directory; ``~/.cache/tfboltz/models``.

    Args:
        cache_dir: an explicit directory (str or path), or None.

    Returns:
        `pathlib.Path` (not necessarily existing yet).
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    checkout = _REPO_ROOT / "pretrained"
    if checkout.is_dir() and (_REPO_ROOT / "setup.py").is_file():
        return checkout
    return DEFAULT_CACHE_DIR.expanduser()


def _recipe_command(card):
    return " ".join(["python", card["recipe"]["script"], *card["recipe"]["args"]])


def _unpublished(card):
    return FetchError(
        f"The weights of model '{card['name']}' are not yet published. Train them with "
        f"`tfboltz train {card['name']}`, which runs its recipe: `{_recipe_command(card)}`; "
        f"or build the untrained model with `tfboltz.zoo.from_preset('{card['name']}', "
        f"load_weights=False)`.")


def _shipped_file(file_name):
    """The file `file_name` in the package data of an installed tfboltz, or None."""
    try:
        candidate = importlib.resources.files(WEIGHTS_PACKAGE).joinpath(file_name)
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return None
    return Path(str(candidate)) if candidate.is_file() else None


def model_path(name, cache_dir=None):
    """Where the weights file (the card's first file) of a zoo model lives or will live.

    The file in the weights directory (see `weights_dir`) if it is there, else the
    one an installed tfboltz ships, else where `fetch` would put it. Nothing is
    downloaded or checked; see `fetch` and `from_preset`.

    Args:
        name: a name from `list_models()`.
        cache_dir: overrides the weights directory (see `weights_dir`).

    Returns:
        str, the path of the ``.weights.h5`` file.

    Raises:
        ValueError: unknown name.
        FetchError: the model's weights are not published.
    """
    card = get_card(name)
    if not card["weights_published"]:
        raise _unpublished(card)
    file_name = card["files"][0]["name"]
    path = weights_dir(cache_dir) / file_name
    shipped = _shipped_file(file_name)
    return str(shipped if shipped is not None and not path.exists() else path)


def weights_source(name, cache_dir=None, verify=True):
    """Where `from_preset(name)` takes the weights file from, without loading it.

    The rules of `from_preset`: the file in the weights directory (see
    `weights_dir`) if it is there, else the one an installed tfboltz ships, else a
    download from the card's URL (or ``$TFBOLTZ_BASE_URL``).

    Example::

        tb.zoo.weights_source("mnist_dbm")
        # {'source': 'package', 'location': '.../tfboltz/zoo_weights/mnist_dbm.weights.h5',
        #  'verified': True}

    Args:
        name: a name from `list_models()`.
        cache_dir: overrides the weights directory (see `weights_dir`).
        verify: check the size and full sha256 of a file in place.

    Returns:
        dict with ``source``: "checkout" (a source checkout's ``pretrained/``),
        "cache" (the weights directory: `cache_dir`, ``$TFBOLTZ_MODELS`` or
        ``~/.cache/tfboltz/models``), "package" (the package data of an installed
        tfboltz), "download" (found nowhere: it would be downloaded), "missing"
        (found nowhere and no URL to download it from) or "unpublished";
        ``location``, the file's path or the URL ("" when there is none); and
        ``verified``, whether the file in place matches the card (None when there is
        no file or `verify` is False).

    Raises:
        ValueError: unknown name.
    """
    card = get_card(name)
    if not card["weights_published"]:
        return {"source": "unpublished", "location": "", "verified": None}
    entry = card["files"][0]
    directory = weights_dir(cache_dir)
    path = directory / entry["name"]
    if path.exists():
        source = ("checkout" if cache_dir is None and not os.environ.get(MODELS_DIR_ENV)
                  and directory == _REPO_ROOT / "pretrained" else "cache")
    else:
        path, source = _shipped_file(entry["name"]), "package"
    if path is not None:
        return {"source": source, "location": str(path),
                "verified": _verified(path, entry) if verify else None}
    base_url = os.environ.get(BASE_URL_ENV)
    url = base_url.rstrip("/") + "/" + entry["name"] if base_url else entry["url"]
    return {"source": "download" if url else "missing", "location": url, "verified": None}


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path, entry):
    """Whether `path` is a file of the card entry's size and sha256."""
    return (path.is_file() and path.stat().st_size == entry["size"]
            and _sha256(path) == entry["sha256"])


def _file_url(model, entry, base_url):
    if base_url:
        return base_url.rstrip("/") + "/" + entry["name"]
    if not entry["url"]:
        raise FetchError(f"File {entry['name']} of model '{model}' has no download URL (its "
                         f"card's `url` is empty): pass `base_url` or set ${BASE_URL_ENV}, or "
                         "put the file beside the card.")
    return entry["url"]


def _base_url(base_url):
    """`base_url`, else $TFBOLTZ_BASE_URL, else None; an http(s) URL."""
    where, name = "argument `base_url`", "base_url"
    if not base_url:
        base_url = os.environ.get(BASE_URL_ENV) or None
        where, name = f"the environment variable `{BASE_URL_ENV}`", BASE_URL_ENV
    if base_url is not None and not (isinstance(base_url, str)
                                     and base_url.startswith(("http://", "https://"))):
        raise ValueError(f"Invalid value received for {where}. Expected an http:// or https:// "
                         f"URL. Received: {name}={base_url!r}")
    return base_url


def _check_timeout(timeout):
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                or not math.isfinite(timeout) or timeout <= 0):
        raise ValueError("Invalid value received for argument `timeout`. Expected a positive "
                         f"number of seconds, or None. Received: timeout={timeout!r}")


def _shut_down(sock):
    try:
        # socket.socket's own shutdown, also for an SSLSocket: the SSLSocket override
        # drops the SSL state that a read in another thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


class _Deadline:
    """The time a `fetch` may take (None: no limit), enforced on its downloads' sockets.

    A socket's timeout bounds each blocking call, so a server that sends a byte now
    and then never trips it. Here a timer shuts down the sockets handed to `watch`
    once the time is up, which ends at once any read waiting on them.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets = []
        self._timer = None
        self._expired = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._sockets = []

    def remaining(self):
        """Seconds left (None: no limit)."""
        return None if self._end is None else max(self._end - time.monotonic(), 0.0)

    def over(self):
        return self._expired or (self._end is not None and time.monotonic() >= self._end)

    def watch(self, sock):
        """Shut `sock` down when the time is up (at once if it is)."""
        if self._end is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self._timer is None:
                self._timer = threading.Timer(self.remaining(), self._expire)
                self._timer.daemon = True
                self._timer.start()
            if self._expired:
                _shut_down(sock)

    def forget(self):
        """Stop watching the sockets so far (their download is over; they close next).

        Under the lock, so that the timer never shuts down a socket being closed.
        """
        with self._lock:
            self._sockets = []

    def _expire(self):
        with self._lock:
            self._expired = True
            for sock in self._sockets:
                _shut_down(sock)


class _WatchedConnections:
    """Mixin for urllib's HTTP(S) handlers: each connection's socket, once connected,
    goes to the deadline (the TLS handshake before it is bounded by the socket's
    timeout, which CPython applies to the whole handshake)."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline

    def do_open(self, http_class, req, **kwargs):
        deadline = self.deadline

        class Connection(http_class):
            def connect(self):
                super().connect()
                deadline.watch(self.sock)

        return super().do_open(Connection, req, **kwargs)


class _HTTPHandler(_WatchedConnections, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_WatchedConnections, urllib.request.HTTPSHandler):
    pass


def _opener(deadline):
    """urllib's opener for http(s) only (no ftp:, file: or data:, redirects included),
    its connections watched by `deadline`."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                    _HTTPHandler(deadline), _HTTPSHandler(deadline),
                    urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPRedirectHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _describe(err, timeout):
    """A short cause for a failed download."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP error {err.code} ({err.reason})"
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout} s"
    if isinstance(err, http.client.HTTPException):
        return f"the connection broke off ({type(err).__name__}: {err})"
    if isinstance(err, urllib.error.URLError):
        return f"could not connect ({reason})"
    return f"{type(err).__name__}: {err}"


def _download(model, entry, url, path, deadline, progress):
    """Stream `url` into a temporary file beside `path`, verify it, move it into place.

    At most the card's size and one byte more are read (the byte that shows the file
    is too long), and the download stops when `deadline` is over.
    """
    from tqdm.auto import tqdm

    size, tmp = entry["size"], None
    timed_out = (f"timed out after {deadline.seconds} s (`timeout` bounds the whole download, "
                 "not each read)")

    def fail(cause):
        return FetchError(f"Could not fetch file {entry['name']} of model '{model}' from {url}: "
                          f"{cause}. Nothing was saved to {path}; run the fetch again.")

    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=entry["name"] + ".part-", dir=path.parent)
        except OSError as err:
            raise fail(f"cannot write to {path.parent} ({err})") from err
        digest, received = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            try:
                if deadline.over():
                    raise fail(timed_out)
                request = urllib.request.Request(url, headers={"User-Agent": "tfboltz"})
                with _opener(deadline).open(request, timeout=deadline.remaining()) as response:
                    try:
                        announced = response.headers.get("Content-Length")
                        if announced is not None and announced.strip() != str(size):
                            raise fail(f"the server announces {announced.strip()[:40]} bytes, "
                                       f"the card expects {size}")
                        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                  desc=entry["name"], disable=not progress, leave=False) as bar:
                            # read1 returns what one read of the socket brings (read would
                            # wait to fill the whole chunk).
                            while chunk := response.read1(min(_CHUNK_BYTES, size + 1 - received)):
                                received += len(chunk)
                                if received > size:
                                    raise fail(f"the server sent more than the card's {size} "
                                               "bytes")
                                out.write(chunk)
                                digest.update(chunk)
                                bar.update(len(chunk))
                    finally:
                        deadline.forget()
            # ValueError: a URL that urllib cannot parse ('http://[bad').
            except (OSError, http.client.HTTPException, ValueError) as err:
                raise fail(timed_out if deadline.over() else
                           _describe(err, deadline.seconds)) from err
        if received != size:
            raise fail(timed_out if deadline.over() else
                       f"the download was cut short or is the wrong file: received {received} "
                       f"bytes, expected {size}")
        actual = digest.hexdigest()
        if actual != entry["sha256"]:
            raise fail(f"sha256 mismatch: expected {entry['sha256']}, received {actual}")
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise fail(f"cannot move the verified download into place ({err})") from err
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _not_a_file(model, entry, path):
    return FetchError(f"Could not use file {entry['name']} of model '{model}': {path} is a "
                      "directory (or another thing that is not a regular file), not the weights "
                      "file. Move it out of the way and run the fetch again.")


def fetch(name, cache_dir=None, base_url=None, timeout=_DEFAULT_TIMEOUT, progress=True):
    """Download and verify the weight files of a zoo model.

    A file already in place with the card's sha256 is kept, and so is a verified file
    that an installed tfboltz ships (its path is returned). Any other file is
    downloaded to a temporary file beside its destination, checked (size and full
    sha256) and only then moved into place, over any file at the destination that
    fails its check. A failed download leaves the destination as it was: no file if
    there was none, the mismatching file untouched if there was one (it may be the
    user's own; `load` refuses it all the same), and no temporary file.

    A download reads no more than the card's ``size`` (a required field of every
    card) and one byte: a server that announces another ``Content-Length``, or sends
    more, fails at once.

    Example::

        paths = tb.zoo.fetch("mnist_rbm", base_url="http://127.0.0.1:8000/weights")

    Args:
        name: a name from `list_models()`.
        cache_dir: overrides the weights directory (see `weights_dir`).
        base_url: replaces the part of each file's URL before the file name (an
            http:// or https:// URL); default ``$TFBOLTZ_BASE_URL``, else the card's
            URLs.
        timeout: seconds the whole call may take, every download included
            (connecting, the server's answer and every byte of the body), not each
            read: a server that sends a byte now and then fails it too. None: no
            limit.
        progress: print one line per file and show a progress bar while downloading.

    Returns:
        list of str, the local paths of the card's files.

    Raises:
        ValueError: unknown name, invalid card, or a `base_url` or `timeout` of the
            wrong kind.
        FetchError: the weights are not published, or a file could not be put in
            place (HTTP error, timeout, broken connection, a file shorter or longer
            than the card's, wrong sha256, a directory in the way, a destination that
            cannot be written); the message names the model, the file and the cause.
    """
    card = get_card(name)
    if not card["weights_published"]:
        raise _unpublished(card)
    return _fetch_files(card, weights_dir(cache_dir), base_url, timeout, progress)


def _fetch_files(card, directory, base_url=None, timeout=_DEFAULT_TIMEOUT, progress=True):
    """Put each of the card's files, verified, in `directory` (see `fetch`)."""
    base_url = _base_url(base_url)
    _check_timeout(timeout)
    with _Deadline(timeout) as deadline:
        return [_fetch_file(card["name"], entry, directory, base_url, deadline, progress)
                for entry in card["files"]]


def _fetch_file(name, entry, directory, base_url, deadline, progress):
    """The path of the card entry's verified file: in `directory`, shipped, or fetched."""
    path = directory / entry["name"]
    try:
        if path.exists() and not path.is_file():
            raise _not_a_file(name, entry, path)
        shipped = None if path.exists() else _shipped_file(entry["name"])
        if _verified(path, entry):
            if progress:
                print(f"{name}: {entry['name']} present, sha256 ok ({path})")
            return str(path)
        if shipped is not None and _verified(shipped, entry):
            if progress:
                print(f"{name}: {entry['name']} shipped with tfboltz, sha256 ok ({shipped})")
            return str(shipped)
    except OSError as err:  # a file in place that cannot be read
        raise FetchError(f"Could not check file {entry['name']} of model '{name}' at {path}: "
                         f"{err}") from err
    url = _file_url(name, entry, base_url)
    mismatching = path.exists()
    if progress and mismatching:
        print(f"{name}: {entry['name']} at {path} fails its sha256 check; "
              f"downloading it again from {url}")
    elif progress:
        print(f"{name}: downloading {entry['name']} ({entry['size']:,d} bytes) from "
              f"{url} to {path}")
    try:
        _download(name, entry, url, path, deadline, progress)
    except FetchError as err:
        if not mismatching:
            raise
        raise FetchError(f"{err} The file already at {path}, which fails its sha256 "
                         "check, was left as it was.") from err
    return str(path)


def list_presets(cls=None):
    """The names of the registered presets, all or those of one model class.

    Example::

        tb.zoo.list_presets()        # ['cifar10_gbm_dbm', 'mnist_dbm', 'mnist_rbm']
        tb.zoo.list_presets(tb.DBM)  # ['cifar10_gbm_dbm', 'mnist_dbm']

    Args:
        cls: a model class, or None for every preset. A preset is listed when its
            class (the card's `registered_name`) is `cls` or a subclass of it.

    Returns:
        list of str, sorted. A card whose weights are not published yet is listed
        (`from_preset(name, load_weights=False)` builds it); an invalid card file is
        not, and is warned about as `list_models` does.
    """
    if cls is None:
        return list_models()
    _warn_invalid_cards()
    _load_models()
    import keras

    return [name for name, card in sorted(_cards().items())
            if _is_subclass(keras.saving.get_registered_object(card["registered_name"]), cls)]


def _is_subclass(candidate, cls):
    return isinstance(candidate, type) and issubclass(candidate, cls)


def _load_models():
    """Load the whole package (TensorFlow first, quietly), whose models register their
    classes with Keras: a program may have imported this module alone (as the
    `tfboltz` command does, to list the zoo without TensorFlow)."""
    import tfboltz

    tfboltz.load_all()


def _model_class(card):
    """The class a card names, resolved through Keras's registry of serializables."""
    _load_models()
    import keras

    model_class = keras.saving.get_registered_object(card["registered_name"])
    if not isinstance(model_class, type):
        raise ValueError(
            f"Unknown model class of preset '{card['name']}'. Expected `registered_name` to "
            "name a class registered with `keras.saving.register_keras_serializable` (`import "
            f"tfboltz` registers its models). Received: "
            f"registered_name={card['registered_name']!r}")
    return model_class


def _wrong_class(preset, preset_class, cls):
    return ValueError(
        f"Expected a preset of `{cls.__name__}`: one of {list_presets(cls)}, or the path of "
        f"one. Received: preset={preset!r}, a preset of `{preset_class.__name__}`. Load it "
        f"with `{preset_class.__name__}.from_preset({preset!r})` or "
        f"`tfboltz.zoo.from_preset({preset!r})`.")


def _card_in_directory(directory):
    """The one card in a preset directory: a .json with `config` and `registered_name`."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and "config" in data and "registered_name" in data:
            found.append(path)
    if not found:
        raise FileNotFoundError(
            f"No model card in the preset directory {directory}. Expected a `.json` card with "
            f"`config` and `registered_name` beside its `{WEIGHTS_SUFFIX}` file, as "
            "`tfboltz.zoo.save_preset` writes them.")
    if len(found) > 1:
        raise ValueError(f"Expected one model card in the preset directory {directory}. "
                         f"Received: {[p.name for p in found]}; pass the path of one instead.")
    return _read_card(found[0])


def _card_of_weights(path):
    """The card of a weights file: NAME.json beside it, else the registered card naming it."""
    beside = path.with_name(path.name[: -len(WEIGHTS_SUFFIX)] + ".json")
    if beside.is_file():
        return _read_card(beside)
    for card in _cards().values():
        if card["files"] and card["files"][0]["name"] == path.name:
            return copy.deepcopy(card)
    raise ValueError(
        f"Found no model card for the weights file {path}: a `{WEIGHTS_SUFFIX}` file holds no "
        f"config. Expected {beside.name} beside it, or a registered preset whose weights file "
        f"is {path.name} (registered: {list_models()}). To load weights of your own, build "
        "the model and call `model.load_weights(path)`.")


def _resolve(preset):
    """(card, registered, weights file or None, directory to look in first or None)."""
    _check_valid(preset)
    if preset in _cards():
        return get_card(preset), True, None, None
    path = Path(preset).expanduser()
    if path.is_dir():
        return _card_in_directory(path), False, None, path
    if path.is_file() and path.name.endswith(".json"):
        return _read_card(path), False, None, path.parent
    if path.is_file() and path.name.endswith(WEIGHTS_SUFFIX):
        return _card_of_weights(path), False, path, None
    if path.exists() or path.suffix in (".json", ".h5", ".keras") or os.sep in preset:
        raise FileNotFoundError(
            f"No preset at {preset}: expected a preset directory, a card `.json`, a "
            f"`{WEIGHTS_SUFFIX}` or a `.keras` file, or one of the registered presets "
            f"{list_models()}.")
    raise ValueError(
        f"Unknown zoo model. Expected `preset` to be one of {list_models()}, or the path of "
        f"a preset directory, a card `.json`, a `{WEIGHTS_SUFFIX}` or a `.keras` file. "
        f"Received: preset={preset!r}")


def _weights_file(card, registered, beside, cache_dir):
    """The verified weights file of a card, fetched into the weights directory if missing."""
    if not card["weights_published"]:
        raise _unpublished(card)
    entry = card["files"][0]
    candidates = [directory / entry["name"]
                  for directory in (beside, weights_dir(cache_dir)) if directory is not None]
    shipped = _shipped_file(entry["name"])
    for path in candidates + ([shipped] if shipped is not None else []):
        if not path.exists():
            continue
        if not path.is_file():
            raise _not_a_file(card["name"], entry, path)
        if not _verified(path, entry):
            remedy = (f"Fetch it again with `tfboltz fetch {card['name']}` (or "
                      f"`tfboltz.zoo.fetch('{card['name']}')`), which replaces it."
                      if registered else "Replace it with the file the card names.")
            raise FetchError(
                f"The weight file {path} of model '{card['name']}' fails its sha256 check "
                f"(expected {entry['sha256']}, {entry['size']} bytes). {remedy}")
        return path
    if not registered and not entry["url"] and not os.environ.get(BASE_URL_ENV):
        raise FileNotFoundError(
            f"The weights file of preset '{card['name']}' is missing: expected it at "
            f"{' or '.join(str(p) for p in candidates)}, and its card has no download URL.")
    return Path(_fetch_files(card, weights_dir(cache_dir))[0])


def _from_keras_file(path, cls, load_weights):
    if not path.is_file():
        raise FileNotFoundError(f"No such model file: {path}")
    _load_models()
    import keras

    model = keras.saving.load_model(path, compile=False)
    if cls is not None and not isinstance(model, cls):
        raise _wrong_class(str(path), type(model), cls)
    return model if load_weights else type(model).from_config(model.get_config())


def from_preset(preset, cls=None, load_weights=True, cache_dir=None):
    """Build a model from a preset, with its verified weights by default.

    Example::

        rbm = tb.zoo.from_preset("mnist_rbm")                        # a registered name
        dbm = tb.zoo.from_preset("pretrained/mnist_dbm.weights.h5")  # a weights file
        mine = tb.zoo.from_preset("runs/my_preset")                  # a preset directory
        tb.zoo.from_preset("mnist_dbm", cls=tb.RBM)                  # ValueError: a DBM

    Args:
        preset: a registered name (`list_presets()`), or the path of a preset
            directory, a card ``.json``, a ``.weights.h5`` or a ``.keras`` file (see
            the module docstring for how each is read).
        cls: a model class the preset must be (or subclass), or None for any.
        load_weights: load the weights (fetching them if missing and checking their
            full sha256 against the card), or only build the model from the card's
            config.
        cache_dir: overrides the weights directory (see `weights_dir`).

    Returns:
        the model, uncompiled (a `tfboltz.RBM`, `tfboltz.DBM`, ...): call `compile`
        before `fit`.

    Raises:
        ValueError: an unknown name (the message lists the registered ones), an
            invalid card, or a preset that is not a `cls` (the message lists the
            presets of `cls`).
        FileNotFoundError: a path that holds no preset, or a missing weights file that
            cannot be fetched.
        FetchError: the weights are not published, could not be fetched, or the file
            in place fails its sha256 check.
    """
    try:
        preset = os.fspath(preset)
    except TypeError:
        raise ValueError("Expected `preset` to be a preset name or a path. Received: "
                         f"preset={preset!r}") from None
    if preset.endswith(".keras"):
        return _from_keras_file(Path(preset).expanduser(), cls, load_weights)
    card, registered, weights, beside = _resolve(preset)
    model_class = _model_class(card)
    if cls is not None and not issubclass(model_class, cls):
        raise _wrong_class(preset, model_class, cls)
    if load_weights:
        if weights is None:
            weights = _weights_file(card, registered, beside, cache_dir)
        elif not _verified(weights, card["files"][0]):
            raise FetchError(
                f"The weights file {weights} does not match the card of preset "
                f"'{card['name']}' (expected sha256 {card['files'][0]['sha256']}, "
                f"{card['files'][0]['size']} bytes). To load weights of your own, call "
                f"`model = tfboltz.zoo.from_preset('{card['name']}', load_weights=False)` "
                "and then `model.load_weights(path)`.")
    model = model_class.from_config(card["config"])
    if load_weights:
        model.load_weights(weights)
    return model


def load(name, pretrained=True, cache_dir=None):
    """Build a zoo model, with its verified pretrained weights by default.

    The same call as ``from_preset(name, load_weights=pretrained, cache_dir=cache_dir)``.

    Example::

        rbm = tb.zoo.load("mnist_rbm")                    # trained weights
        dbm = tb.zoo.load("mnist_dbm", pretrained=False)  # the architecture, untrained

    Args:
        name: a name from `list_models()` (or anything else `from_preset` takes).
        pretrained: load the published weights (fetching them if missing, checking
            their sha256), or build the untrained model from the card's config.
        cache_dir: overrides the weights directory (see `weights_dir`).

    Returns:
        a `tfboltz.RBM`, `tfboltz.DBM`, ...

    Raises:
        ValueError: unknown name, or an invalid card.
        FetchError: the weights are not published, could not be fetched (within
            `fetch`'s default timeout), or the file in place fails its sha256 check
            or is not a file.
    """
    return from_preset(name, load_weights=pretrained, cache_dir=cache_dir)


def _variable_layout(model):
    # Names and shapes, not paths: a path depends on how the model was built (a unit
    # layer built inside the model's scope gets the model's prefix, one from a config
    # does not), while the order of the variables and the weights file's layout do not.
    return [(v.name, tuple(v.shape), v.dtype) for v in model.weights]


def _same_variables(model, other):
    """Whether two models hold the same variables, in order, bit for bit."""
    import keras

    if _variable_layout(model) != _variable_layout(other):
        return False
    for a, b in zip(model.weights, other.weights):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            return False
    return True


def _write_json_atomic(path, obj):
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_preset(model, directory, card):
    """Save a model as a preset: ``NAME.weights.h5`` and its card ``NAME.json``.

    The weights are every model variable (persistent chains included) and no
    optimizer state: they are copied into a fresh model built from
    `model.get_config()` (the model `from_preset` builds) and saved from it with
    `save_weights`. The file is written under a temporary name and renamed only
    once a third model loaded from it holds every variable bit for bit.

    Example::

        card = tb.zoo.get_card("mnist_rbm")          # or the fields of a new card
        card = tb.zoo.save_preset(rbm, "runs/my_rbm_preset", card)
        rbm = tb.zoo.from_preset("runs/my_rbm_preset")

    Args:
        model: the model, of a class registered with
            `keras.saving.register_keras_serializable` (every tfboltz model is).
        directory: the preset directory (created if missing).
        card: the card's other fields (see the module docstring): `name`, `version`,
            `description`, `architecture`, `preprocessing`, `recipe`, `metrics`,
            `license`, `date`, `notes`. `model_class`, `registered_name`, `config`,
            `parameters`, `weights_published` and the first entry of `files` are
            filled in from the model; the file's URL keeps the directory of the
            card's first file URL, or is "" (a preset only on disk).

    Returns:
        dict, the completed card (validated), as written to ``NAME.json``.

    Raises:
        ValueError: the model's class is not registered, the model rebuilt from its
            config has other variables, or the completed card is invalid.
    """
    import keras

    registered_name = keras.saving.get_registered_name(type(model))
    if ">" not in registered_name:
        raise ValueError("Expected a model whose class is registered with "
                         "`keras.saving.register_keras_serializable(package=...)`. Received: "
                         f"a `{type(model).__name__}`")
    card = copy.deepcopy(card)
    config = json.loads(json.dumps(model.get_config()))
    fresh = type(model).from_config(config)
    if _variable_layout(fresh) != _variable_layout(model):
        raise ValueError(
            f"Expected the model rebuilt from its config to have the model's variables. "
            f"Received: {_variable_layout(fresh)} for {_variable_layout(model)}")
    for target, source in zip(fresh.weights, model.weights):
        target.assign(source)
    name = card.get("name", "")
    file_name = f"{name}{WEIGHTS_SUFFIX}"
    old_files = card.get("files") or []
    old_url = old_files[0]["url"] if old_files and isinstance(old_files[0], dict) else ""
    url = old_url.rsplit("/", 1)[0] + "/" + file_name if old_url else ""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file_name}.part-", suffix=WEIGHTS_SUFFIX,
                               dir=directory)
    os.close(fd)
    try:
        fresh.save_weights(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the preset from other users
        again = type(model).from_config(config)
        again.load_weights(tmp)
        if not _same_variables(again, model):
            raise RuntimeError(f"The weights written to {tmp} do not read back bit for bit.")
        card.update({
            "model_class": type(model).__name__, "registered_name": registered_name,
            "config": config, "weights_published": True,
            "parameters": int(sum(np.prod(v.shape) for v in model.trainable_weights)),
            "files": [{"name": file_name, "sha256": _sha256(tmp),
                       "size": os.path.getsize(tmp), "url": url}] + old_files[1:],
        })
        validate_card(card)
        card = {key: card[key] for key in _CARD_KEYS}  # the schema's order, for readers
        os.replace(tmp, directory / file_name)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    _write_json_atomic(directory / f"{name}.json", card)
    return card
