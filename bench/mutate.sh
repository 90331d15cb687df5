#!/usr/bin/env bash
# bench/mutate.sh CORPUS SEED — change about 1 % of the corpus in place, the way a day of use does:
# lines appended to a tenth of the log files, a few source files edited, and one region of the
# disk image rewritten. Deterministic for a given SEED; used by run.sh before its "backup3" phase.
# bench/mutate.sh --revert CORPUS — put back every file changed since the last revert: run.sh does
# at the start of each round, so every round (and every run) backs up the same corpus. The first
# time a file is changed, its original is kept in CORPUS.orig (beside the corpus, not in it).
# No pipefail: the keystream producers end by SIGPIPE when `head` has read enough.
set -eu
if [[ $# -eq 2 && $1 == --revert ]]; then
    ORIG="${2%/}.orig"
    [[ -d $ORIG ]] || exit 0
    (cd "$ORIG" && find . -type f -print0) | while IFS= read -r -d '' rel; do
        cp -p "$ORIG/$rel" "$2/$rel"
    done
    rm -rf "$ORIG"
    exit 0
fi
[[ $# -eq 2 ]] || { echo "usage: $0 CORPUS SEED | $0 --revert CORPUS" >&2; exit 2; }
CORPUS=${1%/}
SEED=$2
ORIG="$CORPUS.orig"
keep() { # FILE: save the original of FILE once, before its first change
    local rel=${1#"$CORPUS"/}
    if [[ ! -e $ORIG/$rel ]]; then
        mkdir -p "$(dirname "$ORIG/$rel")"
        cp -p "$1" "$ORIG/$rel"
    fi
}
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
        keep "$f"
        keystream "$per" | base64 -w 100 | sed "s/^/$(date -u +%FT%TZ) mutate[$SEED]: /" | head -c "$per" >> "$f"
    done
fi
# Source files: one in 200 gets a line inserted at its top (shifts every chunk boundary of the file).
find "$CORPUS/src" -type f -size -256k 2>/dev/null | sort | awk 'NR % 200 == 7' | while read -r f; do
    keep "$f"
    { echo "/* edited $SEED */"; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
done
# The rest: one region of the disk image rewritten in place.
if [[ -f $CORPUS/disk.img ]]; then
    size=$(stat -c %s "$CORPUS/disk.img")
    len=$((budget * 3 / 4))
    ((len < size)) || len=$((size / 2))
    off=$(((SEED * 7919 * 1048576) % (size - len + 1)))
    keep "$CORPUS/disk.img"
    keystream "$len" | dd of="$CORPUS/disk.img" bs=1M seek="$off" oflag=seek_bytes conv=notrunc status=none
fi
