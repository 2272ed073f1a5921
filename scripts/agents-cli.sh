#!/usr/bin/env bash
# agents-cli.sh: start, stop, restart, status and logs of the agentd role daemons of the project you are in.
#
# One copy serves every project: it acts on the nearest folder upwards holding agentd.toml (as agentd itself
# does; AGENTD_ROOT overrides) and runs that project's .venv/bin/agentd, else the agentd on PATH.
# Written for bash 3.2 too (macOS): no associative arrays, no ${var,,}, empty arrays expanded with ${a[@]+...}.
# See docs/howto/agents-cli.md.
set -euo pipefail

prog=${0##*/}

usage() {
    cat <<EOF
Usage: $prog COMMAND [ROLE ...] [OPTIONS]

Start, stop and watch the agentd role daemons of the project you are in: the
nearest folder upwards holding agentd.toml.

Commands:
  start [ROLE ...]    start daemons in the background (no role: every role)
  stop [ROLE ...]     stop daemons; they drain their running tasks first
  restart [ROLE ...]  stop, then start
  status [ROLE ...]   show the daemons; exit 0 when every asked role runs, 3 when one does not
  logs ROLE ...       print each role's log (-n N lines; -f follows one role)

Options after the command go to agentd as they are:
  $prog start --interval 30    $prog stop --timeout 60
  $prog status --json          $prog logs builder -f

agentd used: the project's .venv/bin/agentd, else agentd on PATH.
Colour only on a terminal, and never when NO_COLOR is set.
Exit codes: agentd's (0 ok, 1 failed, 3 not running, 6 unknown role, ...),
2 bad usage, 127 no agentd found.

Examples:
  $prog start
  $prog status builder tester
  $prog logs builder -f
EOF
}

die() { # die CODE MESSAGE: one line on stderr, then exit
    printf '%s: %s\n' "$prog" "$2" >&2
    exit "$1"
}

project_root() { # the nearest folder upwards (physical path) holding agentd.toml, else the current folder
    if [[ -n ${AGENTD_ROOT:-} ]]; then
        printf '%s\n' "$AGENTD_ROOT"
        return 0
    fi
    local here dir
    here=$(pwd -P)
    dir=$here
    while true; do
        if [[ -f $dir/agentd.toml ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
        if [[ $dir == / ]]; then
            break
        fi
        dir=${dir%/*}
        dir=${dir:-/}
    done
    printf '%s\n' "$here"
}

find_agentd() { # the project's own agentd first, then PATH
    local root=$1 found
    if [[ -x $root/.venv/bin/agentd ]]; then
        printf '%s\n' "$root/.venv/bin/agentd"
    elif found=$(command -v agentd); then
        printf '%s\n' "$found"
    else
        return 1
    fi
}

cmd=${1:-}
case $cmd in
    -h | --help | help)
        usage
        exit 0
        ;;
    start | stop | restart | status | logs) shift ;;
    '')
        usage >&2
        exit 2
        ;;
    *)
        printf '%s: unknown command %s (start, stop, restart, status, logs; --help)\n' "$prog" "'$cmd'" >&2
        exit 2
        ;;
esac

if [[ -t 1 && -z ${NO_COLOR+set} && ${TERM:-} != dumb ]]; then
    bold=$'\033[1m' red=$'\033[31m' green=$'\033[32m' reset=$'\033[0m'
else
    bold='' red='' green='' reset=''
fi

root=$(project_root)
agentd=$(find_agentd "$root") ||
    die 127 "agentd not found: no $root/.venv/bin/agentd and none on PATH (make venv, or pip install agentd-sprint)"

heading() { # a bold line, on a terminal only
    if [[ -t 1 ]]; then
        printf '%s\n' "${bold}$*${reset}"
    fi
}

outcome() { # after the work, on a terminal only: green when agentd exited 0, red with the code otherwise
    if [[ ! -t 1 ]]; then
        return 0
    fi
    if [[ $1 -eq 0 ]]; then
        printf '%s\n' "${green}ok${reset}"
    elif [[ $cmd == status && $1 -eq 3 ]]; then
        printf '%s\n' "${red}exit 3: a role asked about is not running${reset}"
    else
        printf '%s\n' "${red}exit $1${reset}"
    fi
}

rc=0
if [[ $cmd != logs ]]; then
    # Every role goes to one agentd call: start brings them up together and reports each; status is one view.
    heading "agentd $cmd ${*:-(every role)} · $root"
    "$agentd" "$cmd" "$@" || rc=$?
    outcome "$rc"
    exit "$rc"
fi

# logs: agentd shows one role's log per call, so loop; options (-n N, -f, --instance NAME) go to each call.
roles=()
options=()
follow=no
while [[ $# -gt 0 ]]; do
    case $1 in
        -n | --lines | --instance)
            if [[ $# -gt 1 ]]; then
                options+=("$1" "$2")
                shift 2
            else
                options+=("$1")
                shift
            fi
            ;;
        -f | --follow)
            follow=yes
            options+=("$1")
            shift
            ;;
        -*)
            options+=("$1")
            shift
            ;;
        *)
            roles+=("$1")
            shift
            ;;
    esac
done
if [[ ${#roles[@]} -eq 0 ]]; then
    die 2 "logs needs a ROLE (for example: $prog logs builder)"
fi
if [[ $follow == yes && ${#roles[@]} -gt 1 ]]; then
    die 2 "logs -f follows one role at a time"
fi
for role in "${roles[@]}"; do
    if [[ ${#roles[@]} -gt 1 ]]; then
        printf '%s\n' "${bold}==> $role <==${reset}"
    fi
    code=0
    "$agentd" logs "$role" ${options[@]+"${options[@]}"} || code=$?
    if [[ $code -gt $rc ]]; then
        rc=$code
    fi
done
exit "$rc"
