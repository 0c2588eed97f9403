#!/bin/sh
# Installs cliproxy from this unpacked release archive: the binary, its man pages (cliproxy(1)
# and one per subcommand) and its shell completions (bash, zsh, fish).
#
#   ./install.sh                 # into /usr/local (run it with sudo)
#   ./install.sh ~/.local        # for one user, no root needed
#   DESTDIR=/tmp/pkg ./install.sh /usr   # staged, for packagers
#
# Uninstall: remove the files it lists.
set -eu

prefix="${1:-${PREFIX:-/usr/local}}"
dest="${DESTDIR:-}"
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

put() { # put MODE SOURCE TARGET
    install -d "$(dirname -- "$dest$3")"
    install -m "$1" "$here/$2" "$dest$3"
    echo "installed $3"
}

put 0755 cliproxy "$prefix/bin/cliproxy"
for page in "$here"/man/*.1; do
    name=$(basename -- "$page")
    put 0644 "man/$name" "$prefix/share/man/man1/$name"
done
put 0644 completions/cliproxy.bash "$prefix/share/bash-completion/completions/cliproxy"
put 0644 completions/_cliproxy "$prefix/share/zsh/site-functions/_cliproxy"
put 0644 completions/cliproxy.fish "$prefix/share/fish/vendor_completions.d/cliproxy.fish"

case ":${PATH}:" in
    *":$prefix/bin:"*) ;;
    *) echo "note: $prefix/bin is not on PATH; add it to use \`cliproxy\` by name" ;;
esac
echo "next: cliproxy init"
