#!/bin/sh
# The `caller` service: a trickle of calls to each site's numbers, forever, so the
# dashboard has traffic. Shares the `phones` network, so its address is a carrier source.
set -eu
SCENARIO=/opt/ccbridge/ccbridge/lab/scenarios/caller.xml
RATE="${CALLER_RATE:-0.2}"   # calls per second per number
cd /tmp
while true; do
    for target in "172.28.0.11:5060 +918000000001 +8801712345678" \
                  "172.28.0.11:5060 +918000000001 +919812345678" \
                  "172.28.0.12:5060 +8809600000001 +8801712345678" \
                  "172.28.0.13:5060 +6328000001 +639171234567"; do
        set -- $target
        sipp -sf "$SCENARIO" -key caller "$3" -s "$2" "$1" -i 172.28.0.30 -p 6100 \
            -mp 25000 -m 5 -r "$RATE" -d 20000 -l 5 -nostdin -timeout 300s >/dev/null 2>&1 || true
    done
done
