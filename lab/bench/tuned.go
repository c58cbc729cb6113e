package bench

// RefScriptTuned is the lab of RefScript as an engineer would script it for
// speed: namespaces created in parallel, one "ip -batch" per namespace
// instead of a process per command, the clients and the server configured
// in parallel, one "nft -f" for the box, and teardown in one "ip -batch".
const RefScriptTuned = `set -euo pipefail
P=twlab-$TWLAB_ID
N=$TWLAB_CLIENTS
nodes="lvs server $(seq -f 'c%g' 1 "$N")"
case "$1" in
build)
  for n in $nodes; do ip netns add "$P-$n" & done
  wait
  {
    echo "link set lo up"
    echo "link add $P-br address 02:74:77:00:03:01 type bridge"
    echo "addr add 198.18.0.1/24 dev $P-br"
    echo "link set $P-br up"
    for i in $(seq 1 "$N"); do
      printf 'link add %s-v%d address 02:74:77:00:02:%02x txqueuelen 1000 type veth peer name %s-c%d address 02:74:77:00:01:%02x netns %s-c%d\n' "$P" "$i" "$i" "$P" "$i" "$i" "$P" "$i"
      echo "link set $P-v$i master $P-br"
      echo "link set $P-v$i up"
      printf 'neigh replace 198.18.0.%d lladdr 02:74:77:00:01:%02x dev %s-br nud permanent\n' "$((10 + i))" "$i" "$P"
    done
    echo "link add $P-ls address 02:74:77:00:04:01 txqueuelen 1000 type veth peer name $P-sl address 02:74:77:00:05:01 netns $P-server"
    echo "addr add 198.18.1.1/24 dev $P-ls"
    echo "link set $P-ls up"
    echo "neigh replace 198.18.1.2 lladdr 02:74:77:00:05:01 dev $P-ls nud permanent"
  } | ip -n "$P-lvs" -batch -
  # The rest in parallel; each job names itself in $failed if it fails.
  failed=$(mktemp)
  for i in $(seq 1 "$N"); do
    { printf 'link set lo up\naddr add 198.18.0.%d/24 dev %s-c%d\nlink set %s-c%d up\nroute add default via 198.18.0.1\nneigh replace 198.18.0.1 lladdr 02:74:77:00:03:01 dev %s-c%d nud permanent\n' \
      "$((10 + i))" "$P" "$i" "$P" "$i" "$P" "$i" | ip -n "$P-c$i" -batch - || echo "c$i" >> "$failed"; } &
  done
  { printf 'link set lo up\naddr add 198.18.1.2/24 dev %s-sl\nlink set %s-sl up\nneigh replace 198.18.1.1 lladdr 02:74:77:00:04:01 dev %s-sl nud permanent\nroute add 198.18.0.0/24 via 198.18.1.1\n' \
    "$P" "$P" "$P" | ip -n "$P-server" -batch - || echo server >> "$failed"; } &
  { printf 'table ip twlab {\n  chain prerouting { type nat hook prerouting priority -100; }\n  chain postrouting { type nat hook postrouting priority 100;\n    oifname "%s-ls" meta l4proto tcp snat to 198.18.1.1\n  }\n}\n' "$P" |
    ip netns exec "$P-lvs" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward && nft -f -' || echo lvs >> "$failed"; } &
  wait
  if [ -s "$failed" ]; then echo "failed: $(cat "$failed")" >&2; rm -f "$failed"; exit 1; fi
  rm -f "$failed"
  ;;
teardown)
  # -force: a namespace a failed build never made must not stop the rest
  for n in $nodes; do echo "netns del $P-$n"; done | ip -force -batch - 2>/dev/null || true
  ;;
esac
`
