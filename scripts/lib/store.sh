# Which store scripts/start sets up: sourced after setup.sh (it needs $ASSETFS_VENV).
#
# choose_start_store sets ASSETFS_STORE_PATH to the store every `assetfs` command will use
# (cas/locate.py: --store, ASSETFS_STORE, `store` in /etc/assetfs.toml, /var/lib/assetfs),
# with two exceptions when nothing names a store, each said on stderr:
#   - a store that an earlier version kept in $ASSETFS_LEGACY_STORE (./assetfs-data) is kept:
#     as root, when /etc/assetfs.toml does not exist, it is written to name that store;
#     otherwise ASSETFS_STORE is exported for this script;
#   - not as root, /var/lib is not writable: the store is ./assetfs-data (ASSETFS_STORE).

ASSETFS_LEGACY_STORE="${ASSETFS_LEGACY_STORE:-$ASSETFS_ROOT/assetfs-data}"

choose_start_store() {
    local source chosen config="${ASSETFS_CONFIG:-/etc/assetfs.toml}" legacy="$ASSETFS_LEGACY_STORE"
    read -r source chosen < <("$ASSETFS_VENV/bin/python" -c '
import sys
from cas.errors import AssetfsError
from cas.locate import choose_store
try:
    choice = choose_store(None)
except AssetfsError as error:
    sys.exit(f"assetfs: {error}")
print(choice.source.replace(" ", "-"), choice.path)')
    [ -n "$source" ] || setup_die "cannot tell which store to use (see the error above)"
    ASSETFS_STORE_PATH="$chosen"
    [ "$source" = default ] || return 0

    if [ -f "$legacy/assetfs.toml" ] && [ ! -f "$chosen/assetfs.toml" ]; then
        if [ "$(id -u)" -eq 0 ] && [ ! -e "$config" ]; then
            printf '# The store every assetfs command uses (README, "Which store").\nstore = "%s"\n' \
                "$legacy" >"$config"
            setup_say "$config names the existing store $legacy (written now)"
        else
            export ASSETFS_STORE="$legacy"
            setup_say "using the existing store $legacy; for your own commands set" \
                "ASSETFS_STORE=$legacy (or store = \"$legacy\" in $config)"
        fi
        ASSETFS_STORE_PATH="$legacy"
    elif [ "$(id -u)" -ne 0 ]; then
        export ASSETFS_STORE="$legacy"
        ASSETFS_STORE_PATH="$legacy"
        setup_say "not root, so the store is $legacy, not $chosen; for your own commands set ASSETFS_STORE=$legacy"
    fi
}
