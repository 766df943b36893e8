#!/usr/bin/env bash
# `make dev`: the whole stack natively, in the foreground, under honcho.
#   migrations -> a development client key -> chat-api, monitor, admin-ui (+ nginx on
#   SERVER_PORT when nginx is installed). Ctrl-C stops everything.
# Configuration: the environment, then ./.env (see env.example). Works against any
# OpenAI-compatible server: OPENAI_BASE_URL=http://127.0.0.1:18000/v1 OPENAI_API_KEY=sk-... make dev
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin

die() { echo "make dev: $*" >&2; exit 1; }
[[ -x $BIN/chat-api && -x $BIN/honcho ]] || die "the virtualenv is missing: run 'make install'"

if [[ -f .env ]]; then
  set -a
  # shellcheck disable=SC1091
  . ./.env
  set +a
fi

export SERVER_PORT=${SERVER_PORT:-8080}
export CHAT_API_PORT=${CHAT_API_PORT:-8001}
export MONITOR_PORT=${MONITOR_PORT:-8002}
export ADMIN_UI_PORT=${ADMIN_UI_PORT:-8501}
export CHAT_API_URL=${CHAT_API_URL:-http://127.0.0.1:$CHAT_API_PORT}
export MONITOR_URL=${MONITOR_URL:-http://127.0.0.1:$MONITOR_PORT}
export DATA_DIR=${DATA_DIR:-data}
export FORWARDED_ALLOW_IPS=${FORWARDED_ALLOW_IPS:-127.0.0.1}
export STACK_PID_DIR=${STACK_PID_DIR:-$DATA_DIR/run}
mkdir -p "$DATA_DIR/run" "$DATA_DIR/nginx"
# Secrets, the SQLite database and spooled usage live here: the developer's only. (nginx's
# workers run as the same user: no user switch without root, `user root` with it.)
chmod 700 "$DATA_DIR"
DATA=$(cd "$DATA_DIR" && pwd)

# A secret from the environment, else the one kept in DATA_DIR (generated once, 0600): the
# convention of domain.adapters.secret_files, which chat-api, llmctl and the console use too,
# so every process agrees on them. The variable is checked here, the file there.
secret() {
  DATA_DIR=$DATA "$BIN/python" -m domain.adapters.secret_files "$1"
}
token_from="the ADMIN_TOKEN environment variable"
[[ -n ${ADMIN_TOKEN:-} ]] || { ADMIN_TOKEN=$(secret admin_token); token_from="$DATA_DIR/admin_token"; }
[[ -n ${KEY_HASH_SECRET:-} ]] || KEY_HASH_SECRET=$(secret key_hash_secret)
if [[ -n ${ADMIN_PASSWORD:-} ]]; then
  password_from="the ADMIN_PASSWORD environment variable"
else
  ADMIN_PASSWORD=$(secret admin_password)
  password_from="$DATA_DIR/admin_password (generated; set ADMIN_PASSWORD to choose one)"
fi
export ADMIN_TOKEN KEY_HASH_SECRET ADMIN_PASSWORD

# Fail early, and clearly, when a port is taken (another `make dev`, another engineer).
"$BIN/python" - "$SERVER_PORT" "$CHAT_API_PORT" "$MONITOR_PORT" "$ADMIN_UI_PORT" <<'PY' || exit 1
import socket, sys
busy = []
for port in sys.argv[1:]:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", int(port))) == 0:
            busy.append(port)
if busy:
    sys.exit(f"make dev: port(s) {', '.join(busy)} already in use; set SERVER_PORT/CHAT_API_PORT/"
             "MONITOR_PORT/ADMIN_UI_PORT to free ones")
PY

echo "==> migrations (${DATABASE_URL:-SQLite under ./data/})"
"$BIN/llmctl" migrate

echo "==> development client key"
client_key=$("$BIN/llmctl" keys create --name "dev-$(date +%Y%m%d-%H%M%S)" | tail -n 1)
(umask 077 && printf '%s\n' "$client_key" >"$DATA/dev_client_key" && chmod 600 "$DATA/dev_client_key")

nginx_bin=$(command -v nginx || true)
for candidate in /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/bin/nginx; do
  [[ -n $nginx_bin ]] && break
  [[ -x $candidate ]] && nginx_bin=$candidate
done

procfile=$DATA/run/Procfile
rm -f "$DATA"/run/*.pid
# Each line records its pid for the monitor (data/run/<service>.pid), then execs the program.
cat >"$procfile" <<PROCFILE
chat-api: echo \$\$ > '$DATA/run/chat-api.pid'; exec '$BIN/chat-api'
monitor: echo \$\$ > '$DATA/run/monitor.pid'; exec '$BIN/monitor'
admin-ui: echo \$\$ > '$DATA/run/admin-ui.pid'; exec '$BIN/admin-ui'
PROCFILE

if [[ -n $nginx_bin ]]; then
  echo "==> nginx config ($DATA_DIR/nginx/nginx.conf)"
  "$BIN/python" scripts/render_nginx.py --target native --prefix "$DATA/nginx" --out "$DATA/nginx/nginx.conf" \
    --listen "$SERVER_PORT" --chat-api "127.0.0.1:$CHAT_API_PORT" \
    --monitor "127.0.0.1:$MONITOR_PORT" --admin-ui "127.0.0.1:$ADMIN_UI_PORT"
  "$nginx_bin" -q -t -c "$DATA/nginx/nginx.conf" -p "$DATA/nginx" -e stderr
  echo "nginx: echo \$\$ > '$DATA/run/nginx.pid'; exec '$nginx_bin' -c '$DATA/nginx/nginx.conf' -p '$DATA/nginx' -e stderr -g 'daemon off;'" >>"$procfile"
  base=http://localhost:$SERVER_PORT
  console=$base/admin/
else
  echo "==> nginx is not installed: no router on :$SERVER_PORT; use the services' own ports"
  base=http://127.0.0.1:$CHAT_API_PORT
  console=http://127.0.0.1:$ADMIN_UI_PORT/admin/
fi
status_url=${nginx_bin:+$base/api/v1/system/status}
status_url=${status_url:-$MONITOR_URL/api/v1/system/status}

if [[ -z ${OPENAI_API_KEY:-} ]]; then
  echo "==> note: OPENAI_API_KEY is unset: only callers' own keys work (use_user_api_key / X-OpenAI-Api-Key)."
  echo "    Set OPENAI_API_KEY (and OPENAI_BASE_URL for an OpenAI-compatible server) in .env."
fi

summary() {
  cat <<TXT

================ LLM Server (make dev) — Ctrl-C stops everything ================
  API (original dialect)  $base/api/v1/        POST $base/api/v1/chat
  OpenAI dialect          $base/v1             (openai SDK: base_url="$base/v1")
  API docs                $base/docs
  System status           $status_url
  Console                 $console
    password from         $password_from
  Direct (no router)      chat-api $CHAT_API_URL · monitor $MONITOR_URL · admin-ui http://127.0.0.1:$ADMIN_UI_PORT/admin/
  Admin API               $CHAT_API_URL/admin/v1/  (Bearer token: $token_from)
  Upstream                ${OPENAI_BASE_URL:-https://api.openai.com/v1}
  Dev client key          $client_key
                          (also in $DATA_DIR/dev_client_key)
  Try:  curl -s $base/api/v1/chat -H "Authorization: Bearer $client_key" \\
          -H 'Content-Type: application/json' -d '{"user_prompt": "안녕하세요!"}'
=================================================================================

TXT
}

# Print the summary once the stack answers (honcho's output keeps streaming above it).
(
  for _ in $(seq 1 120); do
    kill -0 $$ 2>/dev/null || exit 0
    # chat-api first (directly: polling through nginx would fill its log with 502s), then the router.
    if "$BIN/python" -c "import sys, httpx; sys.exit(any(httpx.get(u, timeout=1).status_code >= 500 for u in sys.argv[1:]))" \
         "$CHAT_API_URL/healthz" "$base/api/v1/" >/dev/null 2>&1; then
      summary
      exit 0
    fi
    sleep 0.5
  done
  echo "make dev: the stack did not answer on $base/api/v1/ within 60 s; see the output above" >&2
) &

echo "==> starting: $(cut -d: -f1 "$procfile" | tr '\n' ' ')"
# -e /dev/null: the environment is already complete (honcho would otherwise re-read .env
# and overwrite the generated secrets exported above).
exec "$BIN/honcho" -f "$procfile" -d "$ROOT" -e /dev/null start
