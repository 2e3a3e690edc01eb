#!/usr/bin/env python3
"""Send one HTTP(S) GET preceded by a PROXY protocol v2 header, as an AWS NLB
would, and print the response body. Standard library only.

  python3 examples/send-proxy-v2.py https://localhost:8443/ \
      --src 203.0.113.9 --vpce vpce-0123456789abcdef0

curl cannot do this: its --haproxy-protocol sends v1, without TLVs.
"""
import argparse, ipaddress, socket, ssl, struct, urllib.parse

SIG = b"\r\n\r\n\x00\r\nQUIT\n"

def header(src, src_port, dst, dst_port, vpce):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if s.version == 4 else 0x21          # TCP over IPv4 / IPv6
    body = s.packed + d.packed + struct.pack(">HH", src_port, dst_port)
    if vpce:                                          # PP2_TYPE_AWS (0xEA), subtype 1: VPC endpoint ID
        value = b"\x01" + vpce.encode()
        body += bytes([0xEA]) + struct.pack(">H", len(value)) + value
    return SIG + bytes([0x21, fam]) + struct.pack(">H", len(body)) + body

def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--src", default="203.0.113.9", help="client address to claim")
    p.add_argument("--src-port", type=int, default=5555)
    p.add_argument("--vpce", default="", help="AWS VPC endpoint ID TLV")
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    port = u.port or (443 if u.scheme == "https" else 80)
    sock = socket.create_connection((u.hostname, port), timeout=10)
    dst = "::1" if ":" in a.src else "127.0.0.1"
    sock.sendall(header(a.src, a.src_port, dst, port, a.vpce))
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE   # Caddy's internal CA
        sock = ctx.wrap_socket(sock, server_hostname=u.hostname)
    sock.sendall(f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    print(head.split(b"\r\n")[0].decode())
    print(body.decode(errors="replace"), end="")

if __name__ == "__main__":
    main()
