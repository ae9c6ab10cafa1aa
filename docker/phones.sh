#!/bin/sh
# The `phones` service: a SIPp UAS for every agent contact and carrier line that
# docker/ccbridge.yaml points at this container (the lab runs them all on 127.0.0.1).
# Restarts any that exits.
set -eu
CONFIG=/opt/ccbridge/docker/ccbridge.yaml
SCENARIO=/opt/ccbridge/ccbridge/lab/scenarios/agent.xml
ME=172.28.0.30
PORTS=$(python - "$CONFIG" "$ME" <<'PY'
import sys
from ccbridge.config import load_config
config = load_config(sys.argv[1], resolve_secrets=False)
me = sys.argv[2]
ports = {int(a.contact.rsplit(":", 1)[1]) for s in config.sites for a in s.agents
         if f"@{me}:" in a.contact}
ports |= {t.remote.port for t in config.trunks if t.remote.host == me}
print(" ".join(str(p) for p in sorted(ports)))
PY
)
cd /tmp
for port in $PORTS; do
    (
        while true; do
            # Media port as ccbridge.lab.sipp picks it: each UAS needs its own.
            sipp -sf "$SCENARIO" -i "$ME" -p "$port" -mp $((20000 + port % 10000 * 4)) \
                -nostdin >/dev/null 2>&1 || true
            sleep 1
        done
    ) &
done
wait
