# Source this file to put a supported Node.js (24 or 26 LTS) first on PATH:
#
#   source scripts/use-node.sh 26     # or 24; default 26, the active LTS
#
# Why: Bastion needs Node.js 24+ (OpenSSL 3.5: hybrid ML-KEM key exchange, ML-DSA), and
# build machines may carry an older Node. A machine whose `node` already has the wanted
# major version is left alone. Otherwise the npm registry's `node-linux-<arch>@<major>`
# package (bin/node + include/node) is unpacked once into a cache folder outside the
# repository (BASTION_NODE_HOME, default ~/.cache/bastion-node), its bin goes first on
# PATH, and npm_config_nodedir points at it so that native addons (better-sqlite3) are
# compiled against that Node's headers, not the machine's (a mismatch fails at load with
# "NODE_MODULE_VERSION 115 ... requires 137").
#
# The machine's npm keeps working: it runs on whichever `node` is first on PATH.

bastion_use_node() {
  local major="${1:-26}"
  case "$major" in
    24 | 26) ;;
    *) echo "use-node.sh: supported Node.js majors are 24 and 26, not '$major'" >&2; return 2 ;;
  esac
  local have=""
  have="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || true)"
  if [ "$have" = "$major" ]; then
    return 0
  fi
  local arch
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "use-node.sh: no Node.js package for $(uname -m); install Node.js $major yourself" >&2; return 2 ;;
  esac
  local home="${BASTION_NODE_HOME:-$HOME/.cache/bastion-node}"
  local dir="$home/node-$major-$arch"
  if [ ! -x "$dir/bin/node" ] || [ ! -d "$dir/include/node" ]; then
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/bastion-node.XXXXXX")" || return 1
    echo "use-node.sh: fetching node-linux-$arch@$major from the npm registry into $dir" >&2
    if ! (cd "$tmp" && npm pack --silent "node-linux-$arch@$major" >/dev/null); then
      echo "use-node.sh: npm pack node-linux-$arch@$major failed" >&2
      rm -rf "$tmp"
      return 1
    fi
    mkdir -p "$home" && tar -xzf "$tmp"/node-linux-"$arch"-*.tgz -C "$tmp" || { rm -rf "$tmp"; return 1; }
    # Replace atomically so an interrupted unpack never leaves a half folder behind.
    rm -rf "$dir.partial" && mv "$tmp/package" "$dir.partial" && rm -rf "$dir" && mv "$dir.partial" "$dir"
    rm -rf "$tmp"
  fi
  export PATH="$dir/bin:$PATH"
  export npm_config_nodedir="$dir"
  hash -r 2>/dev/null || true
  have="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || true)"
  if [ "$have" != "$major" ]; then
    echo "use-node.sh: $dir/bin/node is not Node.js $major" >&2
    return 1
  fi
}

bastion_use_node "$@"
