#!/bin/sh
# Installs the real services the tests start (from Debian packages) when missing,
# and the npm packages of the browser test (tests/browser: Strophe.js, playwright-core).
set -e
need=""
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need="$need postgresql"
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
[ -x /usr/bin/chromium ] || need="$need chromium"
command -v node >/dev/null 2>&1 || need="$need nodejs"
command -v npm >/dev/null 2>&1 || need="$need npm"
# Prosody, for the federation test (tests/test_s2s_prosody.py); lua-unbound is its resolver
command -v prosody >/dev/null 2>&1 || need="$need prosody"
# coturn, a real TURN server for the credentials of mod_stun_disco (tests/test_stun_disco.py)
command -v turnserver >/dev/null 2>&1 || need="$need coturn"
ls /usr/lib/x86_64-linux-gnu/lua/5.4/lunbound.so /usr/lib/*/lua/5.4/lunbound.so >/dev/null 2>&1 \
  || need="$need lua-unbound"
if [ -n "$need" ]; then
  echo "installing test services:$need"
  export DEBIAN_FRONTEND=noninteractive
  # packages must not start their system services (Prosody would take ports 5222/5269):
  # tests start their own instances on free loopback ports
  policy=/usr/sbin/policy-rc.d
  [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1; }
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends $need >/dev/null
  [ -z "$made_policy" ] || rm -f "$policy"
fi
browser="$(dirname "$0")/../browser"
if [ ! -d "$browser/node_modules/playwright-core" ] || [ ! -d "$browser/node_modules/strophe.js" ]; then
  echo "installing npm packages of tests/browser"
  # playwright-core never downloads a browser: the test uses Debian's chromium
  (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
