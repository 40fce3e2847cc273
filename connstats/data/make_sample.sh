#!/usr/bin/env bash
# Re-create sample.pcap, the capture `connstats read` shows when given no file.
#
# Two network namespaces joined by a veth pair; the "server" side is captured
# with tcpdump while the "client" side talks TCP, UDP and ICMP to it over IPv4
# and IPv6.  Addresses are from the documentation ranges (192.0.2.0/24,
# 2001:db8::/32) and never leave the namespaces.  Needs root, iproute2,
# tcpdump and python3.  Usage: sudo connstats/data/make_sample.sh [OUTPUT]
set -euo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/sample.pcap}")
cli=cs-sample-client-$$
srv=cs-sample-server-$$
cleanup() { ip netns del "$cli" 2>/dev/null || true; ip netns del "$srv" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$cli"
ip netns add "$srv"
ip link add veth-c netns "$cli" type veth peer name veth-s netns "$srv"
for ns in "$cli" "$srv"; do ip -n "$ns" link set lo up; done
ip -n "$cli" addr add 192.0.2.10/24 dev veth-c
ip -n "$cli" addr add 2001:db8::10/64 dev veth-c nodad
ip -n "$srv" addr add 192.0.2.1/24 dev veth-s
ip -n "$srv" addr add 2001:db8::1/64 dev veth-s nodad
ip -n "$cli" link set veth-c up
ip -n "$srv" link set veth-s up
sleep 2  # let router solicitations and MLD reports of link-up pass

# Servers: an HTTP-ish TCP server (v4 and v6) and a UDP echo server.
ip netns exec "$srv" python3 - <<'PY' &
import socket, threading
def tcp(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 8080)); s.listen()
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000)
    c.close()
def udp(family, addr):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 5353))
    for _ in range(3):
        data, peer = s.recvfrom(2048)
        s.sendto(data * 2, peer)
ts = [threading.Thread(target=f, args=a) for f, a in (
    (tcp, (socket.AF_INET, "192.0.2.1")), (tcp, (socket.AF_INET6, "2001:db8::1")),
    (udp, (socket.AF_INET, "192.0.2.1")), (udp, (socket.AF_INET6, "2001:db8::1")))]
for t in ts: t.start()
for t in ts: t.join()
PY
server=$!
sleep 1
ip netns exec "$srv" tcpdump -i veth-s -U -w "$out" 2>/dev/null &
dump=$!
sleep 1
ip netns exec "$cli" python3 - <<'PY'
import socket, time
for family, addr in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
    c = socket.create_connection((addr, 8080))
    c.sendall(b"GET /sample HTTP/1.0\r\nHost: example\r\n\r\n")
    while c.recv(4096):
        pass
    c.close()
    u = socket.socket(family, socket.SOCK_DGRAM)
    u.bind(("", 40000 if family == socket.AF_INET else 40006))
    for size in (64, 200, 512):
        u.sendto(b"q" * size, (addr, 5353))
        u.recvfrom(4096)
    u.close()
    time.sleep(0.2)
PY
ip netns exec "$cli" ping -q -c 3 -i 0.2 -s 56 192.0.2.1 >/dev/null
ip netns exec "$cli" ping -q -c 3 -i 0.2 -s 100 2001:db8::1 >/dev/null
sleep 1
kill -INT "$dump"
wait "$dump" || true
wait "$server" || true
echo "wrote $out ($(stat -c %s "$out") bytes)"
