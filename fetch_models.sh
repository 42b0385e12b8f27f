#!/usr/bin/env bash
# Download and verify the zoo's preset weight files (the .weights.h5 of each card).
#
#   ./fetch_models.sh [NAME ...] [--base-url URL] [--cache-dir DIR] [--timeout SECONDS]
#
# Needs no Python and no install: bash, awk, curl or wget, and sha256sum (or
# shasum -a 256). With no NAME, every model whose card says "weights_published":
# true. The file names, sizes, URLs and sha256 hashes come from the model cards,
# zoo/NAME.json beside this script. A file already in place with its card's sha256
# is kept; any other is downloaded to a temporary file beside its destination,
# checked (size and full sha256) and only then renamed into place, so a failed or
# corrupt download leaves no file under the final name and a mismatching file in
# place as it was. The destination is --cache-dir, else $TFBOLTZ_MODELS, else the
# checkout's pretrained/ directory; --base-url (or $TFBOLTZ_BASE_URL) replaces
# everything before the file name of each URL. A download stops at one byte more
# than the card's size and after --timeout seconds in all (or $TFBOLTZ_FETCH_TIMEOUT;
# default 600), however slowly the server sends. Exits non-zero if any model fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cards="$here/zoo"
base_url="${TFBOLTZ_BASE_URL:-}"
dest="${TFBOLTZ_MODELS:-$here/pretrained}"
deadline="${TFBOLTZ_FETCH_TIMEOUT:-600}"
names=()
while (($#)); do
    case "$1" in
        --base-url) base_url="${2:?--base-url needs a URL}"; shift 2 ;;
        --cache-dir) dest="${2:?--cache-dir needs a directory}"; shift 2 ;;
        --timeout) deadline="${2:?--timeout needs a number of seconds}"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fetch_models.sh: unknown option $1" >&2; exit 2 ;;
        *) names+=("$1"); shift ;;
    esac
done

if ! [[ "$deadline" =~ ^[1-9][0-9]*$ ]]; then
    echo "fetch_models.sh: --timeout needs a positive whole number of seconds;" \
         "received '$deadline'" >&2
    exit 2
fi

known() { for card in "$cards"/*.json; do basename "$card" .json; done | tr '\n' ' '; }

if ((${#names[@]} == 0)); then
    for card in "$cards"/*.json; do
        if grep -q '"weights_published": *true' "$card"; then
            names+=("$(basename "$card" .json)")
        fi
    done
fi

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

size_of() { wc -c <"$1" | tr -d ' '; }

download() {  # URL FILE SIZE: at most SIZE + 1 bytes (more is an error), within $deadline s
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --connect-timeout 30 --max-time "$deadline" "$1" | head -c "$(($3 + 1))" >"$2"
    elif command -v wget >/dev/null 2>&1; then
        timeout "$deadline" wget -q --tries=1 -O - "$1" | head -c "$(($3 + 1))" >"$2"
    else
        echo "neither curl nor wget is installed" >&2
        return 1
    fi
}

# One line per entry of the card's "files" list: name, sha256, size, url (tab-separated).
# The cards are written by json.dumps(indent=2): one key per line, in this order.
card_files() {
    awk '
        function value(line) {
            sub(/^[^:]*: */, "", line); sub(/,? *$/, "", line); gsub(/"/, "", line)
            return line
        }
        /"files": *\[ *\]/ { next }
        /"files": *\[/ { infiles = 1; next }
        infiles && /^ *\]/ { infiles = 0 }
        infiles && /"name":/ { name = value($0) }
        infiles && /"sha256":/ { sha = value($0) }
        infiles && /"size":/ { size = value($0) }
        infiles && /"url":/ { url = value($0); print name "\t" sha "\t" size "\t" (url == "" ? "-" : url) }
    ' "$1"
}

tmp=""
trap 'if [[ -n "$tmp" ]]; then rm -f "$tmp"; fi' EXIT

fetch_file() {  # MODEL NAME SHA256 SIZE URL
    local model="$1" file="$2" sha="$3" size="$4" url="$5" path="$dest/$2" actual
    if [[ -f "$path" && "$(size_of "$path")" == "$size" && "$(sha256_of "$path")" == "$sha" ]]; then
        echo "$model: $file present, sha256 ok ($path)"
        return 0
    fi
    [[ -n "$base_url" ]] && url="${base_url%/}/$file"
    if [[ "$url" == "-" ]]; then
        echo "$model: $file has no download URL in its card; pass --base-url" >&2
        return 1
    fi
    if [[ -e "$path" ]]; then
        echo "$model: $file at $path fails its sha256 check; downloading it again from $url"
    else
        echo "$model: downloading $file ($size bytes) from $url to $path"
    fi
    mkdir -p "$dest"
    tmp="$(mktemp "$dest/.$file.part-XXXXXX")"
    if ! download "$url" "$tmp" "$size"; then
        if (($(size_of "$tmp") > size)); then
            echo "$model: $file from $url has more than the $size bytes its card expects;" \
                 "nothing was saved to $path" >&2
        else
            echo "$model: could not fetch $file from $url within ${deadline} s;" \
                 "nothing was saved to $path" >&2
        fi
        rm -f "$tmp"; tmp=""
        return 1
    fi
    actual="$(size_of "$tmp")"
    if [[ "$actual" != "$size" ]]; then
        echo "$model: $file from $url has $actual bytes, the card expects $size;" \
             "nothing was saved to $path" >&2
        rm -f "$tmp"; tmp=""
        return 1
    fi
    actual="$(sha256_of "$tmp")"
    if [[ "$actual" != "$sha" ]]; then
        echo "$model: sha256 mismatch for $file from $url: expected $sha, received $actual;" \
             "nothing was saved to $path" >&2
        rm -f "$tmp"; tmp=""
        return 1
    fi
    chmod 644 "$tmp"
    mv -f "$tmp" "$path"
    tmp=""
    echo "$model: $file saved, sha256 ok ($path)"
}

failed=0
for model in "${names[@]}"; do
    card="$cards/$model.json"
    if [[ ! -f "$card" ]]; then
        echo "fetch_models.sh: unknown model '$model'; the cards in $cards are: $(known)" >&2
        failed=1
        continue
    fi
    if ! grep -q '"weights_published": *true' "$card"; then
        echo "fetch_models.sh: the weights of model '$model' are not yet published;" \
             "train them with \`tfboltz train $model\`" >&2
        failed=1
        continue
    fi
    while IFS=$'\t' read -r file sha size url; do
        fetch_file "$model" "$file" "$sha" "$size" "$url" || failed=1
    done < <(card_files "$card")
done
exit "$failed"
