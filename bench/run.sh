#!/usr/bin/env bash
# bench/run.sh — side-by-side benchmark of arch against restic.
#
# Phases, per round, each run for arch then restic (A B A B ...):
#   init     create a fresh repository (timed, but not in the summary table)
#   backup1  first backup of the corpus into the fresh repository
#   backup2  second backup with no change (parent detection / metadata path)
#   backup3  third backup after about 1 % of the corpus changed (bench/mutate.sh, once per round
#            before either tool runs it; the corpus in the cache stays changed)
#   restore  restore of "latest" into an empty directory, then `diff -r` against the corpus
#   check    check --read-data (every pack read, decrypted and verified)
#
# Every run is measured with /usr/bin/time (wall seconds, peak RSS, user/sys CPU); repository size
# with `du -sb`. The summary uses medians across rounds; every raw number goes to
# bench/results/results-<timestamp>.csv (and the summary to results-<timestamp>.txt).
#
# Environment:
#   BENCH_SIZE_MB=1024        corpus size in MiB (cached in bench/work/corpus-<size>); 64 for a quick run
#   BENCH_RESULTS=bench/results  where the CSV and the summary are written
#   BENCH_ROUNDS=3            rounds
#   BENCH_ONLY=both           both | arch | restic
#   BENCH_DROP_CACHES=all     all: drop the page cache before every timed backup and restore;
#                             restore: only before restores; none: never
#   BENCH_SKIP_BUILD=0        1: do not run `cargo build --release` (use the binary as it is)
#   ARCH_BIN=target/release/arch
#   BENCH_KEEP=0              1: keep the last round's repositories (bench/work/run) and the
#                             restored trees (bench/work/restored-<timestamp>)
#   BENCH_WORK=bench/work     work directory (corpus cache, runs, results)
#   BENCH_DELETE_RESTORES=0   1: delete each restored tree once verified (the default keeps them to
#                             the end of the run when the disk has room; see "restore targets")
#   BENCH_TIMEOUT=3600        seconds after which one run is killed and counted as failed
#   BENCH_SOAK=0              1: afterwards run the long ignored tests (SIGKILL soak of prune,
#                             ...) with `cargo test --release -- --ignored`; they fail the run too
#
# Exit status: 0 when every run succeeded and every restore matched; 1 otherwise.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

SIZE_MB=${BENCH_SIZE_MB:-1024}
ROUNDS=${BENCH_ROUNDS:-3}
ONLY=${BENCH_ONLY:-both}
DROP=${BENCH_DROP_CACHES:-all}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
KEEP=${BENCH_KEEP:-0}
WORK=${BENCH_WORK:-$BENCH_DIR/work}
ARCH_BIN=${ARCH_BIN:-$ROOT/target/release/arch}
TIMEOUT=${BENCH_TIMEOUT:-3600}

export RESTIC_PASSWORD=bench
export ARCH_PASSWORD=bench
export DEBIAN_FRONTEND=noninteractive

die() { echo "bench: ERROR: $*" >&2; exit 2; }
say() { echo "bench: $*" >&2; }

[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -ge 10 ]] || die "BENCH_SIZE_MB must be an integer >= 10"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "BENCH_ROUNDS must be an integer >= 1"
[[ $TIMEOUT =~ ^[0-9]+$ && $TIMEOUT -ge 1 ]] || die "BENCH_TIMEOUT must be an integer >= 1"
case $ONLY in both) TOOLS=(arch restic) ;; arch) TOOLS=(arch) ;; restic) TOOLS=(restic) ;;
    *) die "BENCH_ONLY must be both, arch or restic" ;; esac
case $DROP in all|restore|none) ;; *) die "BENCH_DROP_CACHES must be all, restore or none" ;; esac

has_tool() { local t; for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

# ------------------------------------------------------------------ prerequisites
apt_install() { # PACKAGE
    say "installing Debian package '$1'"
    if ! apt-get install -y -q "$1" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q "$1" >/dev/null 2>&1 || die "could not install '$1' with apt-get"
    fi
}
[[ -x /usr/bin/time ]] || apt_install time
if has_tool restic && ! command -v restic >/dev/null; then apt_install restic; fi
command -v openssl >/dev/null || apt_install openssl

mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock -n 9 || die "another bench/run.sh is running (lock $WORK/.lock)"

if has_tool arch; then
    if [[ $SKIP_BUILD != 1 ]]; then
        say "building arch: cargo build --release"
        if ! (cd "$ROOT" && cargo build --release) > "$WORK/build.log" 2>&1; then
            tail -n 30 "$WORK/build.log" >&2
            die "cargo build --release failed (full log: $WORK/build.log); use BENCH_ONLY=restic to bench restic alone"
        fi
    fi
    [[ -x $ARCH_BIN ]] || die "arch binary not found at $ARCH_BIN"
    "$ARCH_BIN" --help >/dev/null 2>&1 || die "'$ARCH_BIN --help' failed"
fi

# ------------------------------------------------------------------ corpus
CORPUS="$WORK/corpus-$SIZE_MB"
"$BENCH_DIR/corpus.sh" "$SIZE_MB" "$CORPUS"
CORPUS=$(cd "$CORPUS" && pwd -P)
CORPUS_BYTES=$(sed -n 's/^bytes=//p' "$CORPUS.done")
CORPUS_FILES=$(sed -n 's/^files=//p' "$CORPUS.done")

# ------------------------------------------------------------------ run bookkeeping
TS=$(date +%Y%m%d-%H%M%S)
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results}
mkdir -p "$RESULTS"
CSV="$RESULTS/results-$TS.csv"
TXT="$RESULTS/results-$TS.txt"
RUN="$WORK/run"
LOGDIR="$WORK/logs-$TS"
mkdir -p "$LOGDIR"
export RESTIC_CACHE_DIR="$RUN/restic-cache"

echo "timestamp,round,tool,phase,wall_s,max_rss_kib,user_s,sys_s,exit_code,repo_bytes,corpus_bytes,page_cache,verify" > "$CSV"

CACHE_STATE=cold   # becomes "warm" as soon as one drop fails
drop_caches() { # -> 0 when the page cache was dropped
    if { sync && echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null; then return 0; fi
    if [[ $CACHE_STATE != warm ]]; then
        say "cannot drop the page cache (not root, or in a container): page cache: warm"
    fi
    CACHE_STATE=warm
    return 1
}
prepare_cache() { # PHASE -> sets M_CACHE to cold|warm for the coming run
    M_CACHE=warm
    case $DROP in
        all) [[ $1 == backup* || $1 == restore || $1 == check ]] || return 0 ;;
        restore) [[ $1 == restore || $1 == check ]] || return 0 ;;
        none) return 0 ;;
    esac
    if drop_caches; then M_CACHE=cold; fi
    return 0
}

FAILURES=0
MISMATCHES=0

# measure ROUND TOOL PHASE CMD... : run CMD under /usr/bin/time, append a CSV row.
# Sets globals M_WALL M_RSS M_RC.
measure() {
    local round=$1 tool=$2 phase=$3
    shift 3
    local tfile="$RUN/time.out" log="$LOGDIR/r$round-$tool-$phase.log"
    prepare_cache "$phase"
    M_RC=0
    rm -f "$tfile"
    # timeout(1) is the direct child; GNU time still reports the peak RSS of the tool under it.
    /usr/bin/time -f "%e %M %U %S" -o "$tfile" timeout -k 30 "$TIMEOUT" "$@" > "$log" 2>&1 < /dev/null || M_RC=$?
    M_WALL=NA M_RSS=0 M_USR=NA M_SYS=NA
    if [[ -s $tfile ]]; then read -r M_WALL M_RSS M_USR M_SYS < <(tail -n 1 "$tfile") || true; fi
    [[ $M_RC -ne 0 || $M_WALL != NA ]] || M_RC=255
    if [[ $M_RC -ne 0 ]]; then
        FAILURES=$((FAILURES + 1))
        local why="exit $M_RC"
        [[ $M_RC -eq 124 || $M_RC -eq 137 ]] && why="TIMED OUT after ${TIMEOUT}s"
        echo "bench: !!!!! $tool $phase FAILED ($why) in round $round; last lines of $log:" >&2
        tail -n 15 "$log" | sed 's/^/bench:   | /' >&2
    fi
}
# check_repo TOOL PHASE REPO: a run that exited 0 but left no repository counts as failed.
check_repo() {
    if [[ $M_RC -eq 0 && ! -d $3 ]]; then
        M_RC=254
        FAILURES=$((FAILURES + 1))
        echo "bench: !!!!! $1 $2 exited 0 but left no repository at $3 (counted as failed)" >&2
    fi
}
csv_row() { # ROUND TOOL PHASE REPO_BYTES VERIFY
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$1,$2,$3,$M_WALL,$M_RSS,$M_USR,$M_SYS,$M_RC,$4,$CORPUS_BYTES,$M_CACHE,$5" >> "$CSV"
}
repo_bytes() { { du -sb "$1" 2>/dev/null || true; } | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

verify_restore() { # TOOL TARGET -> echoes ok|MISMATCH
    local tool=$1 target=$2 restored difflog="$LOGDIR/diff-$1-r$3.log"
    if [[ -d $target$CORPUS ]]; then
        restored=$target$CORPUS
    elif [[ -d $target/$(basename "$CORPUS") ]]; then
        restored=$target/$(basename "$CORPUS")
    else
        echo "bench: !!!!! $tool restore MISMATCH: neither $target$CORPUS nor $target/$(basename "$CORPUS") exists" >&2
        echo MISMATCH
        return
    fi
    if diff -r -q "$CORPUS" "$restored" > "$difflog" 2>&1; then
        echo ok
    else
        echo "bench: !!!!! $tool restore MISMATCH ($(wc -l < "$difflog") differences, $difflog):" >&2
        head -n 10 "$difflog" | sed 's/^/bench:   | /' >&2
        echo MISMATCH
    fi
}

# ------------------------------------------------------------------ header
RESTIC_VERSION=$(has_tool restic && restic version 2>/dev/null | head -n 1 || echo "-")
ARCH_VERSION="-"
if has_tool arch; then
    ARCH_VERSION=$("$ARCH_BIN" --version 2>/dev/null | head -n 1 || true)
    [[ -n $ARCH_VERSION ]] || ARCH_VERSION="arch (no --version)"
fi
GIT_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo "no commit")
say "corpus: $CORPUS ($(mib "$CORPUS_BYTES") MiB, $CORPUS_FILES files)"
say "tools: ${TOOLS[*]}; rounds: $ROUNDS; drop caches: $DROP; arch: $ARCH_VERSION (git $GIT_REV); restic: $RESTIC_VERSION"
say "raw results: $CSV; command logs: $LOGDIR"

# ------------------------------------------------------------------ restore targets
# A restore creates as many files as the corpus has. On ext4 without a journal, creating an inode
# within minutes of deleting many skips and looks up every recently freed one, so a restore that
# follows the deletion of an earlier restore spends up to 0.5 s more kernel time per GiB: the bench
# would measure its own clean-up (restic restored right after arch's tree was deleted, arch after
# restic's of the round before). Restored trees are therefore kept until the end of the run, when
# the disk has room for all of them.
RESTORED="$WORK/restored-$TS"
KEEP_RESTORES=1
need=$((CORPUS_BYTES * 12 / 10 * ROUNDS * ${#TOOLS[@]} + (1 << 30)))
avail=$(df -B1 --output=avail "$WORK" | tail -n 1 | tr -d ' ')
if [[ ${BENCH_DELETE_RESTORES:-0} == 1 ]]; then
    KEEP_RESTORES=0
elif [[ ! $avail =~ ^[0-9]+$ ]] || ((avail < need)); then
    KEEP_RESTORES=0
    say "not enough free space to keep every restored tree ($(mib "${avail:-0}") MiB free, $(mib "$need") MiB needed): each is deleted after it is verified"
fi

# ------------------------------------------------------------------ rounds
for ((round = 1; round <= ROUNDS; round++)); do
    rm -rf "$RUN"
    mkdir -p "$RUN"
    # Every round starts from the corpus as built: the changes before "backup3" are undone.
    "$BENCH_DIR/mutate.sh" --revert "$CORPUS"
    CORPUS_BYTES=$(du -sb "$CORPUS" | cut -f1)
    declare -A REPO=() TARGET=()
    for tool in "${TOOLS[@]}"; do
        REPO[$tool]="$RUN/repo-$tool"
        TARGET[$tool]="$RESTORED/round$round-$tool"
    done

    for tool in "${TOOLS[@]}"; do
        case $tool in
            arch) measure "$round" arch init "$ARCH_BIN" init --repo "${REPO[arch]}" ;;
            restic) measure "$round" restic init restic init --repo "${REPO[restic]}" ;;
        esac
        check_repo "$tool" init "${REPO[$tool]}"
        csv_row "$round" "$tool" init "$(repo_bytes "${REPO[$tool]}")" ""
    done

    for phase in backup1 backup2 backup3; do
        if [[ $phase == backup3 ]]; then
            "$BENCH_DIR/mutate.sh" "$CORPUS" "$round"
            CORPUS_BYTES=$(du -sb "$CORPUS" | cut -f1)
        fi
        for tool in "${TOOLS[@]}"; do
            case $tool in
                arch) measure "$round" arch "$phase" "$ARCH_BIN" backup --quiet --repo "${REPO[arch]}" "$CORPUS" ;;
                restic) measure "$round" restic "$phase" restic backup --quiet --repo "${REPO[restic]}" "$CORPUS" ;;
            esac
            check_repo "$tool" "$phase" "${REPO[$tool]}"
            rb=$(repo_bytes "${REPO[$tool]}")
            csv_row "$round" "$tool" "$phase" "$rb" ""
            say "[round $round/$ROUNDS] $tool $phase: ${M_WALL}s, $(mib $((M_RSS * 1024))) MiB peak RSS, repo $(mib "$rb") MiB, exit $M_RC ($M_CACHE)"
        done
    done

    for tool in "${TOOLS[@]}"; do
        mkdir -p "${TARGET[$tool]}"
        case $tool in
            arch) measure "$round" arch restore "$ARCH_BIN" restore latest --repo "${REPO[arch]}" --target "${TARGET[arch]}" ;;
            restic) measure "$round" restic restore restic restore latest --quiet --repo "${REPO[restic]}" --target "${TARGET[restic]}" ;;
        esac
        if [[ $M_RC -eq 0 ]]; then
            v=$(verify_restore "$tool" "${TARGET[$tool]}" "$round")
        else
            v=failed
        fi
        [[ $v == ok ]] || MISMATCHES=$((MISMATCHES + 1))
        csv_row "$round" "$tool" restore "" "$v"
        say "[round $round/$ROUNDS] $tool restore: ${M_WALL}s, $(mib $((M_RSS * 1024))) MiB peak RSS, verify $v, exit $M_RC ($M_CACHE)"
        [[ $KEEP_RESTORES == 1 ]] || rm -rf "${TARGET[$tool]}"
    done

    for tool in "${TOOLS[@]}"; do
        case $tool in
            arch) measure "$round" arch check "$ARCH_BIN" check --read-data --repo "${REPO[arch]}" ;;
            restic) measure "$round" restic check restic check --read-data --repo "${REPO[restic]}" ;;
        esac
        csv_row "$round" "$tool" check "$(repo_bytes "${REPO[$tool]}")" ""
        say "[round $round/$ROUNDS] $tool check --read-data: ${M_WALL}s, $(mib $((M_RSS * 1024))) MiB peak RSS, exit $M_RC ($M_CACHE)"
    done
done
[[ $KEEP == 1 ]] || rm -rf "$RUN" "$RESTORED"

# ------------------------------------------------------------------ summary
# med TOOL PHASE COLUMN -> median over successful (and, for restores, verified) runs, or NA
med() {
    awk -F, -v tool="$1" -v phase="$2" -v col="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
        $idx["tool"] == tool && $idx["phase"] == phase && $idx["exit_code"] == 0 && $idx[col] != "" &&
            ($idx["verify"] == "" || $idx["verify"] == "ok") { print $idx[col] }
    ' "$CSV" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) print "NA"
        else if (NR % 2) print a[(NR + 1) / 2]
        else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# ratio NUM DEN -> NUM/DEN or NA
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.2f", a / b }'; }
fmt() { awk -v v="$1" -v d="$2" -v s="${3:-1}" 'BEGIN { if (v == "NA") print "NA"; else printf "%.*f", d, v / s }'; }
mbps() { awk -v t="$1" -v b="$CORPUS_BYTES" 'BEGIN { if (t == "NA" || t + 0 == 0) print "NA"; else printf "%.1f", b / 1048576 / t }'; }

{
    echo
    echo "arch vs restic — corpus $(mib "$CORPUS_BYTES") MiB in $CORPUS_FILES files, $ROUNDS round(s), medians"
    echo "arch: $ARCH_VERSION (git $GIT_REV); restic: $RESTIC_VERSION; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if [[ $CACHE_STATE == warm || $DROP == none ]]; then
        echo "page cache: warm"
    else
        echo "page cache: dropped before every $([[ $DROP == all ]] && echo "backup and restore" || echo restore)"
    fi
    if [[ $KEEP_RESTORES == 1 ]]; then
        echo "restored trees: kept until the end of the run (no restore follows the deletion of another)"
    else
        echo "restored trees: deleted after each restore ($([[ ${BENCH_DELETE_RESTORES:-0} == 1 ]] && echo "BENCH_DELETE_RESTORES=1" || echo "too little disk to keep them"))"
    fi
    echo "ratio: time rows = restic/arch (>1: arch faster); RSS and size rows = arch/restic (<1: arch smaller)"
    echo
    printf '%-30s %12s %12s %8s\n' "phase / metric" arch restic ratio
    printf '%-30s %12s %12s %8s\n' "------------------------------" "------------" "------------" "--------"
    for phase in backup1 backup2 backup3 restore check; do
        aw=$(med arch "$phase" wall_s); rw=$(med restic "$phase" wall_s)
        ar=$(med arch "$phase" max_rss_kib); rr=$(med restic "$phase" max_rss_kib)
        printf '%-30s %12s %12s %8s\n' "$phase wall s" "$(fmt "$aw" 2)" "$(fmt "$rw" 2)" "$(ratio "$rw" "$aw")"
        if [[ $phase == backup1 || $phase == restore ]]; then
            printf '%-30s %12s %12s %8s\n' "$phase MiB/s" "$(mbps "$aw")" "$(mbps "$rw")" "$(ratio "$rw" "$aw")"
        fi
        au=$(med arch "$phase" user_s); ru=$(med restic "$phase" user_s)
        as=$(med arch "$phase" sys_s); rs=$(med restic "$phase" sys_s)
        ac=$(awk -v u="$au" -v s="$as" 'BEGIN { if (u == "NA") print "NA"; else print u + s }')
        rc=$(awk -v u="$ru" -v s="$rs" 'BEGIN { if (u == "NA") print "NA"; else print u + s }')
        printf '%-30s %12s %12s %8s\n' "$phase CPU s (user+sys)" "$(fmt "$ac" 2)" "$(fmt "$rc" 2)" "$(ratio "$rc" "$ac")"
        printf '%-30s %12s %12s %8s\n' "$phase peak RSS MiB" "$(fmt "$ar" 1 1024)" "$(fmt "$rr" 1 1024)" "$(ratio "$ar" "$rr")"
    done
    for phase in backup1 backup2 backup3; do
        as=$(med arch "$phase" repo_bytes); rs=$(med restic "$phase" repo_bytes)
        printf '%-30s %12s %12s %8s\n' "repo MiB after $phase" "$(fmt "$as" 1 1048576)" "$(fmt "$rs" 1 1048576)" "$(ratio "$as" "$rs")"
    done
    echo
    if [[ $FAILURES -gt 0 ]]; then echo "!!!!! $FAILURES run(s) FAILED (excluded from medians, as are mismatched restores); see $LOGDIR"; fi
    if [[ $MISMATCHES -gt 0 ]]; then
        echo "!!!!! $MISMATCHES restore(s) did NOT match the corpus or failed (excluded from medians); see $LOGDIR/diff-*.log"
    else
        echo "restore verification: all restores identical to the corpus (diff -r)"
    fi
    echo "raw: $CSV"
} | tee "$TXT"

SOAK_OK=0
if [[ ${BENCH_SOAK:-0} == 1 ]]; then
    echo "bench: soak tests (cargo test --release --workspace -- --ignored)"
    if (cd "$ROOT" && cargo test --release --workspace -- --ignored --skip generate_frozen_repo); then
        echo "bench: soak tests passed"
    else
        echo "!!!!! soak tests FAILED"
        SOAK_OK=1
    fi
fi

[[ $FAILURES -eq 0 && $MISMATCHES -eq 0 && $SOAK_OK -eq 0 ]]
