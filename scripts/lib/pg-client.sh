# shellcheck shell=bash
# scripts/lib/pg-client.sh: psql on a database URL (STAMPEDE_DATABASE_URL, as `scripts/stack
# env` prints it) without the URL's password on psql's command line, where every local user
# reads it (ps, /proc/PID/cmdline): psql gets the URL without it, and the password through
# PGPASSWORD in that one command's environment (/proc/PID/environ: its own user only).
# Needs nothing; sourced by lib/service.sh, lib/postgres.sh, scripts/demo and
# scripts/test-stack-auth.
#
#   pg_url_split URL      sets PG_URL_BARE (URL, its password taken out: from the user
#                         part, or a password= parameter) and PG_URL_PASSWORD (percent-decoded;
#                         empty when the URL has none)
#   psql_url URL ARGS...  psql -d on URL with ARGS, the password in its environment. PSQL is
#                         the command (split on spaces: "timeout 10 psql"; default psql)

pg_url_split() { # URL
    local url=$1 scheme rest userinfo query kept='' item
    PG_URL_BARE=$url PG_URL_PASSWORD=''
    case $url in postgres://* | postgresql://*) ;; *) return 0 ;; esac # key=value: as given
    scheme=${url%%://*}://
    rest=${url#*://}
    # As libpq reads it: the credentials end at the first '@' before any '/'.
    userinfo=${rest%%/*}
    if [[ $userinfo == *@* ]]; then
        userinfo=${userinfo%%@*}
        rest=${rest#*@}
        if [[ $userinfo == *:* ]]; then
            PG_URL_PASSWORD=${userinfo#*:}
            userinfo=${userinfo%%:*}
        fi
        rest=$userinfo@$rest
    fi
    if [[ $rest == *\?* ]]; then
        query=${rest#*\?}
        rest=${rest%%\?*}
        local -a items
        IFS='&' read -ra items <<<"$query"
        for item in "${items[@]}"; do
            case $item in password=*) PG_URL_PASSWORD=${item#password=} ;; *) kept+=${kept:+&}$item ;; esac
        done
        rest+=${kept:+?$kept}
    fi
    PG_URL_BARE=$scheme$rest
    # Percent-decoded, as libpq decodes it (%XX only; a password holds no NUL).
    local decoded=''
    while [[ $PG_URL_PASSWORD =~ ^([^%]*)%([0-9A-Fa-f]{2})(.*)$ ]]; do
        printf -v item '%b' "\\x${BASH_REMATCH[2]}"
        decoded+=${BASH_REMATCH[1]}$item
        PG_URL_PASSWORD=${BASH_REMATCH[3]}
    done
    PG_URL_PASSWORD=$decoded$PG_URL_PASSWORD
}

psql_url() { # URL ARGS...
    local -a cmd
    read -ra cmd <<<"${PSQL:-psql}"
    pg_url_split "$1"
    shift
    if [ -n "$PG_URL_PASSWORD" ]; then
        PGPASSWORD=$PG_URL_PASSWORD "${cmd[@]}" -d "$PG_URL_BARE" "$@"
    else
        "${cmd[@]}" -d "$PG_URL_BARE" "$@"
    fi
}
