"""The model zoo: model cards, verified weight downloads, and loading.

A zoo model is data, not code: a JSON *model card* in the top-level ``zoo/`` directory
(installed as the package data ``tfboltz.zoo_cards``) names the architecture, the
weight files with their full sha256, the recipe (script + arguments) that produced
them, and the metrics they reached. ::

    import tfboltz as tb

    tb.zoo.list_models()                        # ['cifar10_gbm_dbm', 'mnist_dbm', ...]
    tb.zoo.get_card("mnist_rbm")["recipe"]      # {'script': ..., 'args': [...]}
    rbm = tb.zoo.load("mnist_rbm")              # fetched if missing, sha256-verified
    untrained = tb.zoo.load("mnist_rbm", pretrained=False)

Where weight files live (the first rule that applies):

1. the ``cache_dir`` argument of `fetch`, `load` or `model_path`;
2. the environment variable ``TFBOLTZ_MODELS``;
3. the ``pretrained/`` directory of a source checkout (the directory beside the
   ``tfboltz`` package that holds ``setup.py``), which ships the weight files;
4. ``~/.cache/tfboltz/models``.

Downloads come from each file's ``url``; ``TFBOLTZ_BASE_URL`` (or the ``base_url``
argument of `fetch`) replaces everything before the file name, e.g. a mirror or a
local server. A download goes to a temporary file beside its destination and is
moved into place only once its size and full sha256 match the card, so an
interrupted or corrupt download never leaves a file under the final name.

Card schema (every key required; `register` and loading check it):

- ``name`` (str, lower case, ``[a-z0-9_]``, equal to the card's file name),
  ``version`` (str), ``description`` (str);
- ``model_class``: ``"RBM"`` or ``"DBM"``; ``architecture``: the keyword arguments of
  that class's constructor (``n_visible``/``n_hidden`` or ``layer_sizes``);
- ``preprocessing`` (str): what the model expects its inputs to be;
- ``recipe``: ``{"script": "scripts/....py", "args": [str, ...]}``;
- ``files``: list of ``{"name", "sha256" (64 hex digits), "size" (bytes), "url"}``,
  the first one the ``.keras`` model file; empty only when ``weights_published`` is
  false; ``weights_published`` (bool);
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
import numbers
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

CARDS_PACKAGE = "tfboltz.zoo_cards"
MODEL_CLASSES = ("RBM", "DBM")
BASE_URL_ENV = "TFBOLTZ_BASE_URL"
MODELS_DIR_ENV = "TFBOLTZ_MODELS"
DEFAULT_CACHE_DIR = Path("~") / ".cache" / "tfboltz" / "models"

_REPO_ROOT = Path(__file__).resolve().parent.parent
_CHUNK_BYTES = 1 << 20
_CARD_KEYS = {
    "name": str, "version": str, "description": str, "model_class": str,
    "architecture": dict, "preprocessing": str, "recipe": dict, "files": list,
    "weights_published": bool, "parameters": int, "metrics": list, "license": str,
    "date": str, "notes": str,
}
_FILE_KEYS = {"name": str, "sha256": str, "size": int, "url": str}
_METRIC_KEYS = {"name": str, "value": numbers.Real, "unit": str, "command": str}
_RECIPE_KEYS = {"script": str, "args": list}
_ARCHITECTURE_KEYS = {"RBM": ("n_visible", "n_hidden"), "DBM": ("layer_sizes",)}
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")

_registry = None


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
    missing = [k for k in _ARCHITECTURE_KEYS[card["model_class"]] if k not in card["architecture"]]
    if missing:
        raise _card_error(card_name, f"missing key(s) {missing} in `architecture` of a "
                                     f"{card['model_class']}. Received: "
                                     f"{sorted(card['architecture'])}")
    _check_keys(card_name, "recipe", card["recipe"], _RECIPE_KEYS)
    script, args = card["recipe"]["script"], card["recipe"]["args"]
    if not (script.startswith("scripts/") and script.endswith(".py")):
        raise _card_error(card_name, "Expected `recipe.script` to be a path like "
                                     f"'scripts/NAME.py'. Received: script={script!r}")
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
        if not url.startswith(("https://", "http://")) or not url.endswith("/" + name):
            raise _card_error(card_name, f"Expected `files[{i}].url` to be an http(s) URL ending "
                                         f"in '/{name}'. Received: url={url!r}")
    if files and not files[0]["name"].endswith(".keras"):
        raise _card_error(card_name, "Expected the first entry of `files` to be the `.keras` "
                                     f"model file. Received: name={files[0]['name']!r}")


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


def _load_registry():
    registry = {}
    for source in _card_sources():
        stem = source.name[: -len(".json")]
        try:
            card = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"Invalid model card '{stem}': {source.name} is not valid JSON "
                             f"({err})") from err
        validate_card(card)
        if card["name"] != stem:
            raise _card_error(stem, f"Expected `name` to match the file name {source.name}. "
                                    f"Received: name={card['name']!r}")
        registry[stem] = card
    return registry


def _cards():
    global _registry
    if _registry is None:
        _registry = _load_registry()
    return _registry


def list_models():
    """The names of the registered models, sorted.

    Returns:
        list of str, e.g. ``['cifar10_gbm_dbm', 'mnist_dbm', 'mnist_rbm']``.
    """
    return sorted(_cards())


def get_card(name):
    """The model card of a zoo model (a copy: editing it does not change the registry).

    Args:
        name: a name from `list_models()`.

    Returns:
        dict, the card (see the module docstring for its keys).

    Raises:
        ValueError: unknown name; the message lists the known names.
    """
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
            copied; later edits to `card` do not reach the registry.

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
        f"or build the untrained model with `tfboltz.zoo.load('{card['name']}', "
        f"pretrained=False)`.")


def model_path(name, cache_dir=None):
    """Where the model file (the card's first file) of a zoo model lives or will live.

    Nothing is downloaded or checked; see `fetch` and `load`.

    Args:
        name: a name from `list_models()`.
        cache_dir: overrides the weights directory (see `weights_dir`).

    Returns:
        str, the path of the ``.keras`` file.

    Raises:
        ValueError: unknown name.
        FetchError: the model's weights are not published.
    """
    card = get_card(name)
    if not card["weights_published"]:
        raise _unpublished(card)
    return str(weights_dir(cache_dir) / card["files"][0]["name"])


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


def _file_url(entry, base_url):
    if base_url:
        return base_url.rstrip("/") + "/" + entry["name"]
    return entry["url"]


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


def _download(model, entry, url, path, timeout, progress):
    """Stream `url` into a temporary file beside `path`, verify it, move it into place."""
    from tqdm.auto import tqdm

    tmp = None

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
                request = urllib.request.Request(url, headers={"User-Agent": "tfboltz"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    announced = response.headers.get("Content-Length")
                    announced = int(announced) if announced and announced.isdigit() else None
                    if announced is not None and announced != entry["size"]:
                        raise fail(f"the server announces {announced} bytes, the card expects "
                                   f"{entry['size']}")
                    with tqdm(total=entry["size"], unit="B", unit_scale=True, unit_divisor=1024,
                              desc=entry["name"], disable=not progress, leave=False) as bar:
                        while chunk := response.read(_CHUNK_BYTES):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise fail(_describe(err, timeout)) from err
        if received != entry["size"]:
            raise fail(f"the download was cut short or is the wrong file: received {received} "
                       f"bytes, expected {entry['size']}")
        actual = digest.hexdigest()
        if actual != entry["sha256"]:
            raise fail(f"sha256 mismatch: expected {entry['sha256']}, received {actual}")
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def fetch(name, cache_dir=None, base_url=None, timeout=60, progress=True):
    """Download and verify the weight files of a zoo model.

    A file already in place with the card's sha256 is kept. Any other file is
    downloaded to a temporary file beside its destination, checked (size and full
    sha256) and only then moved into place, over any file at the destination that
    fails its check. A failed download leaves the destination as it was: no file if
    there was none, the mismatching file untouched if there was one (it may be the
    user's own; `load` refuses it all the same), and no temporary file.

    Example::

        paths = tb.zoo.fetch("mnist_rbm", base_url="http://127.0.0.1:8000/weights")

    Args:
        name: a name from `list_models()`.
        cache_dir: overrides the weights directory (see `weights_dir`).
        base_url: replaces the part of each file's URL before the file name; default
            ``$TFBOLTZ_BASE_URL``, else the card's URLs.
        timeout: seconds to wait on the connection (for each blocking operation).
        progress: print one line per file and show a progress bar while downloading.

    Returns:
        list of str, the local paths of the card's files.

    Raises:
        ValueError: unknown name.
        FetchError: the weights are not published, or a download failed (HTTP error,
            timeout, broken connection, short file, wrong sha256); the message names
            the model, the file and the cause.
    """
    card = get_card(name)
    if not card["weights_published"]:
        raise _unpublished(card)
    directory = weights_dir(cache_dir)
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    paths = []
    for entry in card["files"]:
        path = directory / entry["name"]
        url = _file_url(entry, base_url)
        if _verified(path, entry):
            if progress:
                print(f"{name}: {entry['name']} present, sha256 ok ({path})")
        else:
            mismatching = path.exists()
            if progress and mismatching:
                print(f"{name}: {entry['name']} at {path} fails its sha256 check; "
                      f"downloading it again from {url}")
            elif progress:
                print(f"{name}: downloading {entry['name']} ({entry['size']:,d} bytes) from "
                      f"{url} to {path}")
            try:
                _download(name, entry, url, path, timeout, progress)
            except FetchError as err:
                if not mismatching:
                    raise
                raise FetchError(f"{err} The file already at {path}, which fails its sha256 "
                                 "check, was left as it was.") from err
        paths.append(str(path))
    return paths


def load(name, pretrained=True, cache_dir=None):
    """Build a zoo model, with its verified pretrained weights by default.

    Example::

        rbm = tb.zoo.load("mnist_rbm")                    # trained weights
        dbm = tb.zoo.load("mnist_dbm", pretrained=False)  # the architecture, untrained

    Args:
        name: a name from `list_models()`.
        pretrained: load the published weights (fetching them if missing, checking
            their sha256), or build the untrained model from the card's architecture.
        cache_dir: overrides the weights directory (see `weights_dir`).

    Returns:
        a `tfboltz.RBM` or `tfboltz.DBM`.

    Raises:
        ValueError: unknown name.
        FetchError: the weights are not published, could not be fetched, or the
            file in place fails its sha256 check.
    """
    import keras

    import tfboltz

    card = get_card(name)
    model_class = getattr(tfboltz, card["model_class"])
    if not pretrained:
        return model_class(**card["architecture"])
    if not card["weights_published"]:
        raise _unpublished(card)
    entry = card["files"][0]
    path = weights_dir(cache_dir) / entry["name"]
    if not path.exists():
        fetch(name, cache_dir=cache_dir)
    elif not _verified(path, entry):
        raise FetchError(
            f"The weight file {path} of model '{name}' fails its sha256 check (expected "
            f"{entry['sha256']}, {entry['size']} bytes). Fetch it again with "
            f"`tfboltz fetch {name}` (or `tfboltz.zoo.fetch('{name}')`), which replaces it.")
    model = keras.saving.load_model(path)
    if not isinstance(model, model_class):
        raise FetchError(f"Expected the weight file {path} of model '{name}' to hold a "
                         f"{card['model_class']}. Received: {type(model).__name__}")
    return model
