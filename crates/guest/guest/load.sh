#!/bin/sh
# tandem-load GROUP: inserts the kernel modules of GROUP (/etc/modules/GROUP,
# one name a line, dependencies first, as the harness wrote it); modules
# already loaded (shared by two groups) are skipped.
list="/etc/modules/$1"
[ -f "$list" ] || { echo "tandem-load: no module group $1" >&2; exit 2; }
while read -r module; do
    [ -d "/sys/module/$module" ] && continue
    insmod "/lib/modules/$module.ko" || { echo "tandem-load: insmod $module failed" >&2; exit 1; }
done <"$list"
