#!/usr/bin/env bash
# bench/mutate.sh CORPUS SEED — change about 1 % of the corpus in place, the way a day of use does:
# lines appended to a tenth of the log files, a few source files edited, and one region of the
# disk image rewritten. Deterministic for a given SEED; used by run.sh before its "backup3" phase.
# No pipefail: the keystream producers end by SIGPIPE when `head` has read enough.
set -eu
[[ $# -eq 2 ]] || { echo "usage: $0 CORPUS SEED" >&2; exit 2; }
CORPUS=$1
SEED=$2
total=$(du -sb "$CORPUS" | cut -f1)
budget=$((total / 100))
keystream() { # BYTES -> seeded pseudo-random bytes on stdout
    openssl enc -aes-128-ctr -pass "pass:mutate-$SEED" -nosalt -pbkdf2 < /dev/zero 2>/dev/null | head -c "$1"
}
# A quarter of the budget: log lines appended to every tenth log file.
mapfile -t logs < <(find "$CORPUS/logs" -type f 2>/dev/null | sort | awk 'NR % 10 == 1')
if ((${#logs[@]} > 0)); then
    per=$((budget / 4 / ${#logs[@]} + 1))
    for f in "${logs[@]}"; do
        keystream "$per" | base64 -w 100 | sed "s/^/$(date -u +%FT%TZ) mutate[$SEED]: /" | head -c "$per" >> "$f"
    done
fi
# Source files: one in 200 gets a line inserted at its top (shifts every chunk boundary of the file).
find "$CORPUS/src" -type f -size -256k 2>/dev/null | sort | awk 'NR % 200 == 7' | while read -r f; do
    { echo "/* edited $SEED */"; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
done
# The rest: one region of the disk image rewritten in place.
if [[ -f $CORPUS/disk.img ]]; then
    size=$(stat -c %s "$CORPUS/disk.img")
    len=$((budget * 3 / 4))
    ((len < size)) || len=$((size / 2))
    off=$(((SEED * 7919 * 1048576) % (size - len + 1)))
    keystream "$len" | dd of="$CORPUS/disk.img" bs=1M seek="$off" oflag=seek_bytes conv=notrunc status=none
fi
