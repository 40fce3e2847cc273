#!/usr/bin/env bash
# Debian packages that tests and benchmarks run for real (none is needed to
# build or import connstats). Installed in one apt transaction where we are
# root with apt-get; anywhere else the tests that need them skip and say why.
#   iperf3, iputils-ping   tests/test_tun_router.py, benchmarks/test_bench_tun_router.py
#   tshark, tcpdump        oracles of tests/test_capture_real.py and of the read
#                          options (conversations, --bpf), of the tunnel tests
#                          (tests/test_tunnels_*.py, test_cli_decap.py; mergecap
#                          comes with tshark); peers in benchmarks
#   libpcap0.8             compiles `read --bpf` and `capture --bpf` (loaded at run time)
#   softflowd, nfdump, argus-server, argus-client
#                          the peers of benchmarks/test_bench_read.py
#   nfdump, pmacct         real IPFIX collectors (nfcapd, nfacctd) of tests/test_export_*.py
#   iproute2, gcc          the veth lab and C sender of the live capture tests
#                          and benchmarks/test_bench_capture.py
#   prometheus             the real server of tests/test_export_prometheus.py
#                          (the test starts its own on loopback, not the service)
#   golang-go              the encoding/json oracle of tests/test_netlog.py
#                          (builds tests/data/netlog_oracle/main.go; std only),
#                          and the Go port of benchmarks/test_bench_go.py
#                          (go_compare.py; under a second in short mode)
#   zstd                   the oracle of tests/test_compress_bounds.py (zstd -d)
set -uo pipefail
packages=(iperf3 iputils-ping tshark tcpdump libpcap0.8 softflowd nfdump
          argus-server argus-client pmacct iproute2 gcc prometheus golang-go zstd)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "== system packages: all present (${packages[*]})"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "== system packages: not root with apt-get; missing ${missing[*]}: their tests will skip"
    exit 0
fi
echo "== system packages: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no, without a prompt
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections || true
apt-get update -q >/dev/null || echo "apt-get update failed; trying the cached lists"
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "apt-get install failed for some of ${missing[*]}: their tests will skip"
exit 0
