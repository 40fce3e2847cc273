"""A toy UDP forwarder on loopback that counts its traffic with connstats.

A client sends datagrams to the forwarder, which relays them to an echo
server and relays the answers back.  For each datagram it handles, the
forwarder builds the IPv4/UDP packet a TUN device would carry and hands it to
connstats: requests as tx, answers as rx.  Both directions land on one
Connection.  Run:  python examples/loopback_forwarder.py
"""

from __future__ import annotations

import socket
import struct
import threading

import connstats


def ip_udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    return header + udp


def echo_server(sock: socket.socket, count: int) -> None:
    for _ in range(count):
        data, peer = sock.recvfrom(2048)
        sock.sendto(data.upper(), peer)


def main(count: int = 20) -> None:
    def dump(start, end, virtual, physical):
        print(f"window {start:%H:%M:%S.%f} .. {end:%H:%M:%S.%f}")
        for conn, counts in sorted(virtual.items()):
            print(f"  {conn}: {counts}")

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    threading.Thread(target=echo_server, args=(server, count), daemon=True).start()
    forwarder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forwarder.bind(("127.0.0.1", 0))
    forwarder.settimeout(5)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)

    with connstats.Statistics(max_period=0.5, dump=dump) as stats:
        for i in range(count):
            client.sendto(f"ping {i}".encode(), forwarder.getsockname())
            data, client_addr = forwarder.recvfrom(2048)
            stats.update_tx_virtual(
                ip_udp_packet(client_addr, server.getsockname(), data)
            )
            forwarder.sendto(data, server.getsockname())
            answer, _ = forwarder.recvfrom(2048)
            stats.update_rx_virtual(
                ip_udp_packet(server.getsockname(), client_addr, answer)
            )
            forwarder.sendto(answer, client_addr)
            client.recvfrom(2048)
    for sock in (server, forwarder, client):
        sock.close()


if __name__ == "__main__":
    main()
