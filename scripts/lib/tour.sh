# The tour of the CLI that scripts/start shows: sourced, after ASSETFS_STORE (or the system's
# store) is set up, with $ASSETFS the command to run (default: assetfs on PATH).
#
# It never changes a user's data: it works in its own bucket, `tour`, puts a file only when
# its name is free (`put --name` onto a taken name would replace what is there), and on a
# second run finds its files in place and puts nothing.

ASSETFS_TOUR_BUCKET=tour

tour_run() {
    local assetfs="${ASSETFS:-assetfs}" samples name missing=()
    samples="$(mktemp -d)"
    printf 'assetfs keeps each distinct content once.\n' >"$samples/readme.txt"
    cp "$samples/readme.txt" "$samples/copy-of-readme.txt"
    printf '{"kind": "example"}\n' >"$samples/settings.json"

    for name in readme.txt copy-of-readme.txt settings.json; do
        if ! "$assetfs" stat "$ASSETFS_TOUR_BUCKET/$name" >/dev/null 2>&1; then
            missing+=("$name")
        fi
    done

    echo
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "== the tour's files are in bucket '$ASSETFS_TOUR_BUCKET' already: nothing to put"
    else
        echo "== put the tour's files into bucket '$ASSETFS_TOUR_BUCKET' (two with the same content: one object)"
        for name in "${missing[@]}"; do
            "$assetfs" put "$ASSETFS_TOUR_BUCKET" "$samples/$name" --name "$name"
        done
    fi
    rm -rf "$samples"
    echo
    echo "== the bucket's files, by name"
    "$assetfs" ls "$ASSETFS_TOUR_BUCKET/"
    echo
    echo "== one of them: its id, content type, names"
    "$assetfs" stat "$ASSETFS_TOUR_BUCKET/readme.txt"
    echo
    echo "== dedup at work"
    "$assetfs" stats
    echo
    echo "== disk and catalog agree"
    "$assetfs" fsck
}
