"""The traffic of tests/data/lo-s96.*: run it while capturing on loopback.

    tcpdump -i lo -s 0 -w lo.pcap "port 47311 or port 47312" &
    python tests/data/make_truncated_traffic.py
    editcap -F pcap -s 96 lo.pcap lo-s96.pcap

TCP writes of 300 to 2,143 bytes echoed back twice, and IPv6 UDP datagrams
of 50 to 1,400 bytes: most packets are longer than the 96 bytes kept.
"""

import socket
import threading
import time

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 47311))
srv.listen()


def serve() -> None:
    conn, _ = srv.accept()
    while data := conn.recv(65536):
        conn.sendall(data * 2)
    conn.close()


thread = threading.Thread(target=serve)
thread.start()
client = socket.create_connection(("127.0.0.1", 47311))
for i in range(20):
    client.sendall(bytes([65 + i]) * (300 + 97 * i))
    time.sleep(0.01)
    client.recv(65536)
client.close()
thread.join()
sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
receiver.bind(("::1", 47312))
for i in range(10):
    sender.sendto(b"q" * (50 + 150 * i), ("::1", 47312))
    receiver.recvfrom(65536)
