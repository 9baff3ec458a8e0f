# shellcheck shell=bash
# scripts/lib.sh: the old path of scripts/lib/service.sh, kept for callers not yet moved
# (scripts/test-alerts); new code sources scripts/lib/service.sh. See docs/scripts.md.
# shellcheck source=scripts/lib/service.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/service.sh"
