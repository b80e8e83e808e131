#!/bin/sh
# thrashguard notify.on_action hook: one structured journal entry per action.
#
#   [notify]
#   on_action = ["/usr/local/lib/thrashguard/log-to-journal.sh"]
#
# Query later with: journalctl -t thrashguard-action THRASHGUARD_ACTION=kill
# Runs with a clean environment (PATH and the THRASHGUARD_* variables, docs/notify.md),
# no shell around it and a timeout (notify.timeout_s). Without the journal it falls back
# to syslog through logger(1), then to stderr (which thrashguard logs).
set -eu

msg="thrashguard: ${THRASHGUARD_OUTCOME} ${THRASHGUARD_NAME} (${THRASHGUARD_PID}): ${THRASHGUARD_ACTION}, ${THRASHGUARD_REASON}, footprint ${THRASHGUARD_FOOTPRINT_KIB} KiB, full stall ${THRASHGUARD_FULL_STALL_PCT} %, scope ${THRASHGUARD_SCOPE}"

if command -v logger >/dev/null 2>&1 && [ -S /run/systemd/journal/socket ]; then
    # logger --journald reads KEY=value lines: the journal keeps every field searchable
    logger --journald <<FIELDS
MESSAGE=$msg
SYSLOG_IDENTIFIER=thrashguard-action
PRIORITY=4
THRASHGUARD_ACTION=$THRASHGUARD_ACTION
THRASHGUARD_OUTCOME=$THRASHGUARD_OUTCOME
THRASHGUARD_REASON=$THRASHGUARD_REASON
THRASHGUARD_PID=$THRASHGUARD_PID
THRASHGUARD_NAME=$THRASHGUARD_NAME
THRASHGUARD_CMDLINE=$THRASHGUARD_CMDLINE
THRASHGUARD_FOOTPRINT_KIB=$THRASHGUARD_FOOTPRINT_KIB
THRASHGUARD_SWAP_KIB=$THRASHGUARD_SWAP_KIB
THRASHGUARD_SCOPE=$THRASHGUARD_SCOPE
THRASHGUARD_UNIX_MS=$THRASHGUARD_UNIX_MS
THRASHGUARD_FULL_STALL_PCT=$THRASHGUARD_FULL_STALL_PCT
THRASHGUARD_HEADROOM_KIB=$THRASHGUARD_HEADROOM_KIB
FIELDS
elif command -v logger >/dev/null 2>&1 && [ -S /dev/log ]; then
    logger -t thrashguard-action -p daemon.warning -- "$msg"
else
    echo "$msg" >&2
fi
