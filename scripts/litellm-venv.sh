#!/usr/bin/env bash
# Installs LiteLLM Proxy (the comparison target of `make bench-compare`) and with it the litellm
# SDK (a foreign client in tests/e2e/test_foreign_clients.py, run by `make test`) into its own
# venv, .bench-venv/litellm, never into the project venv (litellm's pins clash with ours, e.g.
# boto3 → python-dateutil < 3).
#
# litellm pins a certifi release newer than the one the package registry may serve, so
# litellm itself is installed with --no-deps and then its listed requirements (core +
# the "proxy" extra, read from the installed metadata) are installed, with certifi
# unpinned, and so are the exact pins on litellm's companion packages (litellm-proxy-extras,
# litellm-enterprise), for the same reason. Idempotent: does nothing when the right version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${LITELLM_VERSION:-1.109.1}"
VENV="${LITELLM_VENV:-.bench-venv/litellm}"
PY="${PY:-python3}"
# litellm fetches its model cost map from the internet on import (unreachable offline: three
# tries with back-off); its bundled copy is enough for an import check.
export LITELLM_LOCAL_MODEL_COST_MAP=True

# Written only once the proxy's imports resolved (below): re-checking by importing takes ~20 s,
# which every `make test` would pay.
STAMP="$VENV/.ready-$VERSION"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/litellm" ]; then
  echo "litellm $VERSION ready in $VENV"
  exit 0
fi

if [ -x "$VENV/bin/litellm" ] && "$VENV/bin/python" - "$VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import litellm.proxy.proxy_server  # noqa: F401  (the proxy's imports resolve)
sys.exit(0 if version("litellm") == sys.argv[1] else 1)
PY
then
  touch "$STAMP"
  echo "litellm $VERSION ready in $VENV"
  exit 0
fi

echo "installing litellm $VERSION (proxy) into $VENV"
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip packaging
"$VENV/bin/pip" install -q --no-deps "litellm==$VERSION"
"$VENV/bin/python" - > "$VENV/litellm-requirements.txt" <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement

for spec in requires("litellm") or []:
    req = Requirement(spec)
    wanted = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", "proxy"))
    if not wanted:
        continue
    if req.name.lower() == "certifi":
        print("certifi")  # the pinned release may be missing from the registry; any recent one works
        continue
    if req.name.lower().startswith("litellm-"):
        print(req.name)  # companion packages pinned to releases the registry may lack; the newest it has
        continue
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    print(f"{req.name}{extras}{req.specifier}")
PY
"$VENV/bin/pip" install -q -r "$VENV/litellm-requirements.txt"
"$VENV/bin/python" -c "import litellm.proxy.proxy_server" >/dev/null
rm -f "$VENV"/.ready-*
touch "$STAMP"
echo "litellm $VERSION ready in $VENV"
