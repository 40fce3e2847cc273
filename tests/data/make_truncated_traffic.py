import socket, threading, time

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 47311))
srv.listen()


def serve():
    c, _ = srv.accept()
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d * 2)
    c.close()


t = threading.Thread(target=serve)
t.start()
c = socket.create_connection(("127.0.0.1", 47311))
for i in range(20):
    c.sendall(bytes([65 + i]) * (300 + 97 * i))
    time.sleep(0.01)
    c.recv(65536)
c.close()
t.join()
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
v = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
v.bind(("::1", 47312))
for i in range(10):
    u.sendto(b"q" * (50 + 150 * i), ("::1", 47312))
    v.recvfrom(65536)
