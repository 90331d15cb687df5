#!/usr/bin/env bash
# bench/corpus.sh — build (or reuse) the benchmark corpus.
#
#   bench/corpus.sh SIZE_MB DEST_DIR
#
# Builds DEST_DIR (e.g. bench/work/corpus-1024) of about SIZE_MB MiB of mixed content:
#
#   src/    30 %  real source/doc trees copied from this machine (many small files):
#                 ~/.cargo/registry/src, /usr/include, /usr/lib/python3*, /usr/share/doc,
#                 /usr/share/perl, the Rust HTML docs of a rustup toolchain
#   random/ 20 %  large incompressible files (seeded AES-CTR keystream, up to 256 MiB each)
#   media/  10 %  medium incompressible files, 64 KiB .. 4 MiB ("photos")
#   logs/   15 %  compressible log files (timestamped text lines, seeded)
#   disk.img 25 % a "disk image": 4 MiB slots of unique random data, one repeated random block A,
#                 a second repeated block B, and zero regions, behind an odd-sized header so the
#                 repeats are not 4 MiB aligned (content-defined chunking must find them).
#
# Everything except src/ is generated from fixed seeds, so it is byte-identical between runs on
# the same machine; src/ depends on what is installed. The corpus is cached: when
# DEST_DIR.done exists with the current CORPUS_VERSION it is reused as is.
set -euo pipefail

CORPUS_VERSION=3
MiB=$((1024 * 1024))

die() { echo "corpus.sh: error: $*" >&2; exit 1; }
log() { echo "corpus.sh: $*" >&2; }

[[ $# -eq 2 ]] || die "usage: $0 SIZE_MB DEST_DIR"
SIZE_MB=$1
DEST=$2
[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -ge 10 ]] || die "SIZE_MB must be an integer >= 10 (got '$SIZE_MB')"
DEST=${DEST%/}
STAMP="$DEST.done"

if [[ -d $DEST && -f $STAMP ]] && grep -qx "corpus_version=$CORPUS_VERSION" "$STAMP"; then
    log "reusing cached corpus $DEST"
    exit 0
fi

command -v openssl >/dev/null || die "openssl is required (apt-get install -y openssl)"

TOTAL=$((SIZE_MB * MiB))
SRC_BUDGET=$((TOTAL * 30 / 100))
RAND_BUDGET=$((TOTAL * 20 / 100))
MEDIA_BUDGET=$((TOTAL * 10 / 100))
LOG_BUDGET=$((TOTAL * 15 / 100))
IMG_BUDGET=$((TOTAL * 25 / 100))

TMP="$DEST.tmp"
rm -rf "$TMP" "$STAMP"
[[ -e $DEST ]] && rm -rf "$DEST"
rm -rf "$DEST.orig"
mkdir -p "$TMP"/{src,random,media,logs}

# keystream SEED INDEX BYTES: deterministic incompressible bytes on stdout. Every (SEED, INDEX)
# gets its own AES key: CTR streams that share a key and differ only in IV are the same keystream
# shifted by a few blocks, which a deduplicating backup would (rightly) find.
keystream() {
    local key
    key=$(printf '%032x%032x' "$1" "$2")
    { openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null || true; } | head -c "$3"
}

# ---------------------------------------------------------------- src/: real trees
log "copying source trees (~$((SRC_BUDGET / MiB)) MiB)"
roots=()
labels=()
add_root() { [[ -d $1 ]] && { roots+=("$1"); labels+=("$2"); }; return 0; }
add_root "$HOME/.cargo/registry/src" cargo-registry
add_root /usr/include usr-include
for p in /usr/lib/python3*; do add_root "$p" "$(basename "$p")"; done
add_root /usr/share/doc usr-share-doc
add_root /usr/share/perl usr-share-perl
for p in "$HOME"/.rustup/toolchains/*/share/doc/rust/html; do
    add_root "$p" rust-html
    break
done
[[ ${#roots[@]} -gt 0 ]] || log "warning: no source trees found on this machine; src/ stays empty"

remaining=$SRC_BUDGET
for i in "${!roots[@]}"; do
    left=$(( ${#roots[@]} - i ))
    share=$(( remaining / left ))
    list="$TMP/.list"
    # Regular readable files, sorted by path so the selection is stable; names with newlines or
    # tabs are skipped (tar -T reads one name per line). Take files in order until the share.
    find "${roots[$i]}" -type f -readable ! -name $'*\n*' ! -name $'*\t*' -printf '%s\t%P\n' 2>/dev/null \
        | LC_ALL=C sort -t $'\t' -k2,2 \
        | awk -F '\t' -v budget="$share" '{ if (sum + $1 > budget) exit; sum += $1; print substr($0, index($0, "\t") + 1) }' \
        > "$list" || true
    mkdir -p "$TMP/src/${labels[$i]}"
    if [[ -s $list ]]; then
        tar -C "${roots[$i]}" --verbatim-files-from -T "$list" -cf - 2>/dev/null \
            | tar -C "$TMP/src/${labels[$i]}" -xf -
    fi
    got=$(find "$TMP/src/${labels[$i]}" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')
    remaining=$(( remaining - got ))
    if (( remaining < 0 )); then remaining=0; fi
    log "  ${labels[$i]}: $((got / MiB)) MiB, $(wc -l < "$list") files from ${roots[$i]}"
done
rm -f "$TMP/.list"
if (( remaining > 4 * MiB )); then log "warning: source trees were $((remaining / MiB)) MiB short of their share"; fi

# ---------------------------------------------------------------- random/: big incompressible
log "writing random files (~$((RAND_BUDGET / MiB)) MiB)"
max_big=$((256 * MiB))
nbig=$(( (RAND_BUDGET + max_big - 1) / max_big ))
if (( nbig < 2 )); then nbig=2; fi
for ((i = 0; i < nbig; i++)); do
    keystream 100 "$i" $((RAND_BUDGET / nbig)) > "$TMP/random/big-$i.bin"
done

# ---------------------------------------------------------------- media/: medium incompressible
log "writing media files (~$((MEDIA_BUDGET / MiB)) MiB)"
left=$MEDIA_BUDGET
i=0
while (( left > 0 )); do
    # sizes cycle deterministically between 64 KiB and ~4 MiB
    sz=$(( (64 * 1024) + (i * 7919 * 4099) % (4 * MiB - 64 * 1024) ))
    if (( sz > left )); then sz=$left; fi
    d="$TMP/media/$(printf 'album-%02d' $((i / 20)))"
    mkdir -p "$d"
    keystream 200 "$i" "$sz" > "$d/$(printf 'IMG_%04d.jpg' "$i")"
    left=$(( left - sz ))
    i=$((i + 1))
done

# ---------------------------------------------------------------- logs/: compressible text
log "writing log files (~$((LOG_BUDGET / MiB)) MiB)"
max_log=$((32 * MiB))
nlog=$(( (LOG_BUDGET + max_log - 1) / max_log ))
for ((i = 0; i < nlog; i++)); do
    kind=$([[ $((i % 2)) -eq 0 ]] && echo app || echo access)
    awk -v seed=$((300 + i)) -v limit=$((LOG_BUDGET / nlog)) -v kind="$kind" -v start=$((1700000000 + i * 86400)) '
    BEGIN {
        srand(seed)
        split("INFO INFO INFO INFO INFO DEBUG DEBUG WARN WARN ERROR", lv, " ")
        split("GET GET GET GET POST POST PUT DELETE", meth, " ")
        split("200 200 200 200 200 200 201 204 301 304 400 404 404 500 503", st, " ")
        split("users items orders carts sessions search health metrics", res, " ")
        split("cache miss, loading from db|connection pool exhausted, waiting|retrying upstream request|slow query detected|user logged in|user logged out|scheduled job finished|config reloaded|tls handshake failed|rate limit exceeded", msg, "|")
        t = start; n = 0
        while (n < limit) {
            t += rand() * 0.05
            ts = sprintf("%s.%03dZ", strftime("%Y-%m-%dT%H:%M:%S", int(t), 1), int((t - int(t)) * 1000))
            if (kind == "access")
                line = sprintf("10.%d.%d.%d - - [%s] \"%s /api/v1/%s/%d HTTP/1.1\" %s %d \"-\" \"client/%d.%d\" rt=%.3f",
                    int(rand() * 4), int(rand() * 256), int(rand() * 256), ts, meth[int(rand() * 8) + 1],
                    res[int(rand() * 8) + 1], int(rand() * 100000), st[int(rand() * 15) + 1],
                    int(rand() * 60000), int(rand() * 3), int(rand() * 10), rand() * 0.8)
            else
                line = sprintf("%s %-5s [worker-%02d] req=%08x %s (%s id=%d, %d ms)", ts, lv[int(rand() * 10) + 1],
                    int(rand() * 16), int(rand() * 4294967295), msg[int(rand() * 10) + 1],
                    res[int(rand() * 8) + 1], int(rand() * 100000), int(rand() * 500))
            print line
            n += length(line) + 1
        }
    }' > "$TMP/logs/$kind-$(printf '%03d' "$i").log"
done

# ---------------------------------------------------------------- disk.img: repeated regions
log "writing disk image (~$((IMG_BUDGET / MiB)) MiB)"
slot=$((4 * MiB))
nslots=$(( IMG_BUDGET / slot ))
if (( nslots < 4 )); then nslots=4; fi
keystream 400 0 "$slot" > "$TMP/.blockA"
keystream 400 1 "$slot" > "$TMP/.blockB"
{
    keystream 401 0 $((MiB + 1234))            # odd-sized header: repeats are not 4 MiB aligned
    for ((s = 0; s < nslots; s++)); do
        case $((s % 8)) in
            0|3|4) keystream 402 "$s" "$slot" ;;  # unique data
            1|5)   cat "$TMP/.blockA" ;;          # the same block, several times
            2|6)   head -c "$slot" /dev/zero ;;   # zero region (written, not sparse)
            7)     cat "$TMP/.blockB" ;;
        esac
    done
} > "$TMP/disk.img"
rm -f "$TMP/.blockA" "$TMP/.blockB"

# ---------------------------------------------------------------- done
mv "$TMP" "$DEST"
bytes=$(find "$DEST" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')
files=$(find "$DEST" -type f | wc -l)
{
    echo "corpus_version=$CORPUS_VERSION"
    echo "size_mb=$SIZE_MB"
    echo "bytes=$bytes"
    echo "files=$files"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$STAMP"
log "corpus ready: $DEST ($((bytes / MiB)) MiB, $files files)"
