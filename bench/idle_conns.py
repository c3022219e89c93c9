"""Open N keep-alive connections, each making one authenticated request, and
hold them idle; print the proxy's resident memory before and after.

Usage: idle_conns.py HOST PORT N TOKEN PATH PID [tls]   (bench/conns.sh runs it)
With `tls`, every connection is TLS 1.3 (HTTP/1.1, certificate not checked)."""
import asyncio, ssl, sys, time, resource
host, port, n, token, path, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
tls = None
if len(sys.argv) > 7 and sys.argv[7] == "tls":
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["http/1.1"])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1])
req = (f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
async def one(i, conns, sem):
    async with sem:
        # Four source addresses, so that the per-address cap (three quarters
        # of what the open-file limit allows) does not turn clients away.
        r, w = await asyncio.open_connection(host, port, local_addr=(f"127.0.0.{2 + i % 4}", 0), ssl=tls)
        w.write(req); await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        cl = 0
        for l in head.split(b"\r\n"):
            if l.lower().startswith(b"content-length:"): cl = int(l.split(b":")[1])
        if cl: await r.readexactly(cl)
        assert head.startswith(b"HTTP/1.1 200"), head[:40]
        conns.append((r, w))
async def main():
    before = rss()
    conns = []; sem = asyncio.Semaphore(200)
    t = time.time()
    await asyncio.gather(*(one(i, conns, sem) for i in range(n)))
    await asyncio.sleep(1.0)
    after = rss()
    print(f"conns={len(conns)} rss_before_kib={before} rss_after_kib={after} per_conn_bytes={(after-before)*1024//max(1,len(conns))} took={time.time()-t:.1f}s")
    for r, w in conns: w.close()
asyncio.run(main())
