#!/usr/bin/env python3
"""Deterministic generator of a realistic text-log corpus for benchmarks.

Usage:
    gen-corpus.py OUTDIR --size-mib N [--small-files K] [--seed S]
    gen-corpus.py OUTDIR --small-only --small-files K [--seed S]
    gen-corpus.py OUTDIR --single-file --size-mib N [--seed S]
    gen-corpus.py OUTDIR --append-percent P [--seed S]

The first form writes about N MiB into OUTDIR (which must be empty or
absent):

    nginx/access.log.1  nginx/access.log     combined-format access logs
    app/app.jsonl.1     app/app.jsonl        JSON application logs with
                                             request ids and token fragments
    syslog  auth.log                         syslog, sshd/sudo/pam lines
    small/NNN/*.log|*.jsonl                  K small files of 1-10 KiB

The same arguments always give the same bytes. Rotated pairs are
continuous in time: x.1 is older, x continues where x.1 stops.

The second form writes only the K small files (no large files): a
many-small-files set. The third writes only the large files' bytes, about N
MiB, into one file OUTDIR/all.log: exactly the concatenation, in the order
above, of the large files of `OUTDIR --size-mib N --small-files 0`.

The last form appends P percent of each file's current size to the live
large files of an existing corpus (access.log, app.jsonl, syslog, auth.log;
rotated *.1 files stay as they are, as on a real host), continuing their
timestamps, for an incremental benchmark. It is deterministic too: the same corpus, P and S
give the same appended bytes.

Speed: lines are not formatted one by one. Each log kind has a pool of a
few thousand line heads and tails built once; every simulated second of log
is a random sample of head+tail pairs joined in C, with the second's
timestamp and a per-second salt (part of request ids) substituted into the
whole block at once. 1 GiB takes a few seconds.
"""

import argparse
import calendar
import os
import random
import re
import sys
import time

MIB = 1024 * 1024
POOL = 3000  # heads and tails per kind
FLUSH = 8 * MIB  # write in blocks of at least this size
TS = b"\x00"  # placeholder for the timestamp of the current second
SALT = b"\x01"  # placeholder for the per-second salt (6 hex digits)
START = 1795132800  # 2026-11-20T00:00:00Z: where the oldest file begins
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
MONTH_NO = {m: i + 1 for i, m in enumerate(MONTHS)}

# Large files, in generation order, with their share of the large-file bytes.
# A rotated pair (x.1 then x) is one continuous stream in time.
LARGE = [
    ("nginx/access.log.1", "nginx", 0.22),
    ("nginx/access.log", "nginx", 0.28),
    ("app/app.jsonl.1", "app", 0.15),
    ("app/app.jsonl", "app", 0.20),
    ("syslog", "syslog", 0.09),
    ("auth.log", "auth", 0.06),
]
CONTINUES = {"nginx/access.log": "nginx/access.log.1", "app/app.jsonl": "app/app.jsonl.1"}
RATE = {"nginx": 150, "app": 110, "syslog": 30, "auth": 10}  # mean lines per second
SMALL_KINDS = ["nginx", "app", "syslog", "auth"]
SMALL_EXT = {"nginx": "log", "app": "jsonl", "syslog": "log", "auth": "log"}
SMALL_PER_DIR = 500

# ----------------------------------------------------------------- timestamps


def ts_nginx(t):
    g = time.gmtime(t)
    return b"%02d/%s/%d:%02d:%02d:%02d" % (
        g.tm_mday, MONTHS[g.tm_mon - 1].encode(), g.tm_year, g.tm_hour, g.tm_min, g.tm_sec)


def ts_syslog(t):
    g = time.gmtime(t)
    return b"%s %2d %02d:%02d:%02d" % (
        MONTHS[g.tm_mon - 1].encode(), g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec)


def ts_iso(t):
    g = time.gmtime(t)
    return b"%d-%02d-%02dT%02d:%02d:%02d" % (
        g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec)


TS_FMT = {"nginx": ts_nginx, "app": ts_iso, "syslog": ts_syslog, "auth": ts_syslog}


def epoch(y, mo, d, h, mi, s):
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


def last_timestamp(path, kind):
    """Epoch second of the last line of a corpus file, for --append-percent."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 65536))
        tail = f.read()
    lines = tail.rstrip(b"\n").split(b"\n")
    last = lines[-1].decode("utf-8", "replace")
    if kind == "nginx":
        m = re.search(r"\[(\d\d)/(\w{3})/(\d{4}):(\d\d):(\d\d):(\d\d) ", last)
        d, mon, y, h, mi, s = m.groups()
        return epoch(int(y), MONTH_NO[mon], int(d), int(h), int(mi), int(s))
    if kind == "app":
        m = re.search(r'"ts":"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)', last)
        return epoch(*map(int, m.groups()))
    # syslog has no year: take the first year at or after START's.
    m = re.match(r"(\w{3}) +(\d+) (\d\d):(\d\d):(\d\d) ", last)
    mon, d, h, mi, s = m.groups()
    year = time.gmtime(START).tm_year
    t = epoch(year, MONTH_NO[mon], int(d), int(h), int(mi), int(s))
    if t < START:
        t = epoch(year + 1, MONTH_NO[mon], int(d), int(h), int(mi), int(s))
    return t


# ----------------------------------------------------------------- line pools

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "ShopApp/4.12.0 (iOS 18.1; iPhone15,2)",
    "ShopApp/4.11.3 (Android 14; Pixel 8)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "kube-probe/1.31",
    "Prometheus/2.53.0",
]
WORDS = ["boots", "winter+jacket", "gift+card", "scarf", "headphones", "kettle", "lamp", "usb-c+cable",
         "running+shoes", "coffee+beans", "backpack", "desk+chair", "monitor", "socks", "gloves"]
STATIC = ["/static/app.4f9c2e.js", "/static/app.4f9c2e.css", "/static/vendor.91ab0d.js",
          "/static/img/logo.svg", "/favicon.ico", "/static/img/hero-winter.webp",
          "/static/fonts/inter-var.woff2", "/static/img/sprite.3c1f.png"]
REFERERS = ["-", "https://shop.example.com/", "https://shop.example.com/products",
            "https://shop.example.com/cart", "https://www.google.com/", "https://duckduckgo.com/"]
SUSPICIOUS = [
    ("GET", "/.env", 404), ("GET", "/.git/config", 404), ("GET", "/wp-login.php", 404),
    ("GET", "/static/../../../../etc/passwd", 400), ("POST", "/xmlrpc.php", 404),
    ("GET", "/api/v1/products?id=1%27%20OR%20%271%27%3D%271", 400),
    ("GET", "/api/v1/customers/export?from=0&limit=5000", 200),
    ("GET", "/actuator/env", 404), ("GET", "/phpmyadmin/index.php", 404),
]
SERVICES = ["login-api", "checkout-api", "catalog-api", "profile-svc", "cart-svc"]
HOSTS = ["web-%02d" % i for i in range(1, 13)]
B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def rand_ip(r):
    x = r.random()
    if x < 0.70:  # shared address space 100.64.0.0/10: many distinct clients
        return "100.%d.%d.%d" % (r.randrange(64, 128), r.randrange(256), r.randrange(1, 255))
    if x < 0.90:
        return "%s.%d" % (r.choice(["192.0.2", "198.51.100", "203.0.113"]), r.randrange(1, 255))
    return "10.%d.%d.%d" % (r.randrange(0, 8), r.randrange(256), r.randrange(1, 255))


def hexs(r, n):
    return "%0*x" % (n, r.getrandbits(4 * n))


def b32(r, n):
    return "".join(r.choice(B32) for _ in range(n))


def nginx_pool(r):
    heads, tails = [], []
    for _ in range(POOL):
        user = "-" if r.random() < 0.97 else r.choice(["admin", "ops", "deploy"])
        heads.append(f"{rand_ip(r)} - {user} [\x00 +0000] ")
    for _ in range(POOL):
        x = r.random()
        ref = r.choice(REFERERS)
        ua = r.choice(UAS)
        if x < 0.02:
            m, path, st = r.choice(SUSPICIOUS)
            proto, size, ref = "HTTP/1.1", r.randrange(60, 200) if st != 200 else r.randrange(2_000_000, 2_600_000), "-"
        elif x < 0.08:
            m, path, st, proto, size, ua, ref = "GET", "/healthz", 200, "HTTP/1.1", 2, "kube-probe/1.31", "-"
        elif x < 0.38:
            m, path, proto = "GET", r.choice(STATIC), "HTTP/2.0"
            st = r.choice([200, 200, 200, 304])
            size = 0 if st == 304 else r.randrange(900, 480_000)
        elif x < 0.60:
            page = r.choice(["/", "/products", "/products/%d" % r.randrange(1000, 999_999), "/cart",
                             "/checkout", "/account", "/help/returns", "/search?q=" + r.choice(WORDS),
                             "/category/%s?page=%d" % (r.choice(WORDS).split("+")[0], r.randrange(1, 30))])
            m, path, proto, st, size = "GET", page, "HTTP/2.0", r.choice([200] * 30 + [301, 404]), r.randrange(8000, 64000)
        else:
            m, path, st = r.choice([
                ("GET", "/api/v1/products?page=%d&size=24" % r.randrange(1, 60), 200),
                ("GET", "/api/v1/products/%d" % r.randrange(1000, 999_999), 200),
                ("GET", "/api/v1/account", r.choice([200, 200, 401])),
                ("POST", "/api/v1/cart/items", 201),
                ("GET", "/api/v1/cart", 200),
                ("POST", "/api/v1/session", r.choice([200, 200, 200, 401, 429])),
                ("GET", "/api/v1/orders?limit=10&cursor=%s" % hexs(r, 12), 200),
                ("POST", "/api/v1/checkout", r.choice([201, 201, 402, 409])),
                ("DELETE", "/api/v1/session", 204),
            ])
            proto = "HTTP/2.0"
            size = 0 if st == 204 else r.randrange(40, 9000)
            if r.random() < 0.01:
                st, size = r.choice([500, 502, 503, 504]), 157
        tails.append(f'"{m} {path} {proto}" {st} {size} "{ref}" "{ua}"\n')
    return heads, tails


def app_pool(r):
    heads, tails = [], []
    for _ in range(POOL):
        heads.append('{"ts":"\x00.%03dZ","service":"%s","host":"%s","request_id":"req_\x01%s"' % (
            r.randrange(1000), r.choice(SERVICES), r.choice(HOSTS), b32(r, 14)))
    kids = [b32(r, 43) for _ in range(3)]
    for _ in range(POOL):
        x = r.random()
        user = "u_%d" % r.randrange(10_000, 9_999_999)
        tok = "tok_%s\u2026" % hexs(r, 8)
        ip = rand_ip(r)
        lat = r.randrange(1, 80)
        if x < 0.30:
            t = ',"level":"info","event":"token_verified","sub":"%s","kid":"%s","token":"%s","client_ip":"%s","latency_ms":%d}' % (
                user, r.choice(kids), tok, ip, lat)
        elif x < 0.45:
            t = ',"level":"info","event":"login_succeeded","sub":"%s","method":"%s","client_ip":"%s","session_id":"ses_%s","token_issued":"%s"}' % (
                user, r.choice(["password", "passkey", "password+totp", "sso"]), ip, hexs(r, 12), tok)
        elif x < 0.53:
            t = ',"level":"warn","event":"login_failed","username_hash":"h_%s","reason":"%s","client_ip":"%s"}' % (
                hexs(r, 10), r.choice(["bad_password", "unknown_user", "totp_mismatch", "locked"]), ip)
        elif x < 0.70:
            t = ',"level":"info","event":"http_request","method":"%s","path":"%s","status":%d,"bytes":%d,"latency_ms":%d,"sub":"%s"}' % (
                r.choice(["GET", "GET", "POST", "PUT"]), r.choice(["/v1/cart", "/v1/orders", "/v1/products/%d" % r.randrange(1000, 999_999),
                                                                   "/v1/account", "/v1/checkout"]),
                r.choice([200, 200, 200, 201, 204, 400, 404]), r.randrange(0, 20000), lat, user)
        elif x < 0.80:
            t = ',"level":"info","event":"session_refreshed","sub":"%s","old_token":"%s","token":"tok_%s\u2026","kid":"%s"}' % (
                user, tok, hexs(r, 8), r.choice(kids))
        elif x < 0.88:
            t = ',"level":"info","event":"order_placed","sub":"%s","order_id":"ord_%s","items":%d,"total_cents":%d,"currency":"%s"}' % (
                user, b32(r, 12), r.randrange(1, 9), r.randrange(199, 250_000), r.choice(["EUR", "USD", "GBP"]))
        elif x < 0.93:
            t = ',"level":"debug","event":"cache","key":"product:%d","hit":%s,"latency_us":%d}' % (
                r.randrange(1000, 999_999), r.choice(["true", "true", "false"]), r.randrange(40, 900))
        elif x < 0.98:
            t = ',"level":"warn","event":"rate_limited","client_ip":"%s","route":"%s","limit":%d,"window_s":60}' % (
                ip, r.choice(["/v1/session", "/v1/search", "/v1/checkout"]), r.choice([30, 60, 120]))
        else:
            t = ',"level":"error","event":"upstream_error","upstream":"%s","status":%d,"latency_ms":%d,"error":"%s"}' % (
                r.choice(SERVICES), r.choice([502, 503, 504]), r.randrange(1000, 30000),
                r.choice(["connection reset by peer", "context deadline exceeded", "no healthy upstream"]))
        tails.append(t + "\n")
    return heads, tails


def syslog_tails(r, auth):
    out = []
    for _ in range(POOL):
        pid = r.randrange(300, 4_000_000)
        ip = rand_ip(r)
        port = r.randrange(1024, 65536)
        x = r.random()
        if auth or x < 0.3:
            y = r.random()
            u = r.choice(["root", "admin", "test", "oracle", "ubuntu", "postgres", "git", "pi", "user", "ftp"])
            if y < 0.30:
                t = f"sshd[{pid}]: Failed password for invalid user {u} from {ip} port {port} ssh2"
            elif y < 0.40:
                t = f"sshd[{pid}]: Invalid user {u} from {ip} port {port}"
            elif y < 0.50:
                t = f"sshd[{pid}]: Connection closed by authenticating user root {ip} port {port} [preauth]"
            elif y < 0.60:
                t = f"sshd[{pid}]: Accepted publickey for deploy from 10.0.4.{r.randrange(2, 60)} port {port} ssh2: ED25519 SHA256:{b32(r, 43)}"
            elif y < 0.70:
                who = r.choice(["deploy", "irt", "backup"])
                t = f"sshd[{pid}]: pam_unix(sshd:session): session {r.choice(['opened', 'closed'])} for user {who}" + (
                    "(uid=1001) by (uid=0)" if r.random() < 0.5 else "")
            elif y < 0.80:
                t = f"CRON[{pid}]: pam_unix(cron:session): session {r.choice(['opened', 'closed'])} for user root" + (
                    "(uid=0) by (uid=0)" if r.random() < 0.5 else "")
            elif y < 0.88:
                who = r.choice(["deploy", "ops", "jdoe"])
                cmd = r.choice(["/usr/bin/systemctl restart login-api", "/usr/bin/journalctl -u nginx --since today",
                                "/usr/bin/tail -n 200 /var/log/nginx/error.log", "/usr/bin/apt-get upgrade -y",
                                "/usr/bin/cat /etc/login-api/keys/token-signing-rsa.key"])
                t = f"sudo:   {who} : TTY=pts/{r.randrange(0, 6)} ; PWD=/home/{who} ; USER=root ; COMMAND={cmd}"
            elif y < 0.94:
                t = f"sshd[{pid}]: error: kex_exchange_identification: Connection closed by remote host"
            else:
                t = f"systemd-logind[{r.randrange(400, 900)}]: New session {r.randrange(1, 99999)} of user {r.choice(['deploy', 'irt', 'backup'])}."
        else:
            y = r.random()
            if y < 0.25:
                unit = r.choice(["logrotate.service", "apt-daily.service", "certbot.service", "fstrim.service", "man-db.service"])
                t = f"systemd[1]: {r.choice(['Starting', 'Started', 'Finished'])} {unit} - {unit.split('.')[0]}."
            elif y < 0.45:
                t = f"kernel: [{r.randrange(1, 9_999_999)}.{r.randrange(1_000_000):06d}] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:{hexs(r, 2)}:{hexs(r, 2)}:{hexs(r, 2)} SRC={ip} DST=10.0.1.{r.randrange(2, 250)} LEN={r.randrange(40, 1500)} TTL={r.randrange(30, 255)} PROTO=TCP SPT={port} DPT={r.choice([22, 23, 3389, 445, 8080])}"
            elif y < 0.65:
                t = f'dockerd[{pid}]: time="\x00Z" level={r.choice(["info", "info", "warning"])} msg="{r.choice(["ignoring event", "container health check ok", "Pulling image", "cleaning up dead shim"])}" container={hexs(r, 12)}'
            elif y < 0.80:
                msg = r.choice(["upstream timed out (110: Connection timed out) while reading response header from upstream",
                                "client intended to send too large body",
                                'limiting requests, excess: 10.500 by zone "login"'])
                t = f"nginx[{pid}]: {msg}, client: {ip}"
            elif y < 0.90:
                t = f'containerd[{pid}]: time="\x00Z" level=info msg="shim disconnected" id={hexs(r, 64)}'
            else:
                t = f"login-api[{pid}]: GC forced: heap={r.randrange(20, 900)}MiB pause={r.randrange(1, 90)}ms"
        # syslog-style daemons log their own RFC 3339 time: reuse the second.
        t = t.replace("\x00Z", "\x02Z")
        out.append(t + "\n")
    return out


def syslog_pool(r, auth):
    heads = [f"\x00 {r.choice(HOSTS)} " for _ in range(POOL)]
    return heads, syslog_tails(r, auth)


def build_pools(seed):
    pools = {}
    for kind, make in [("nginx", nginx_pool), ("app", app_pool),
                       ("syslog", lambda r: syslog_pool(r, False)),
                       ("auth", lambda r: syslog_pool(r, True))]:
        r = random.Random(f"{seed}:pool:{kind}")
        heads, tails = make(r)
        pools[kind] = ([h.encode() for h in heads], [t.encode() for t in tails])
    return pools


# ----------------------------------------------------------------- writers


class Block:
    """Makes the bytes of one second of one kind of log."""

    def __init__(self, pools, kind, rng):
        self.heads, self.tails = pools[kind]
        self.fmt = TS_FMT[kind]
        self.rate = RATE[kind]
        self.rng = rng
        self.salted = kind == "app"
        self.iso = kind == "syslog"

    def second(self, t, k=None):
        rng = self.rng
        if k is None:
            k = int(self.rate * (0.4 + 1.2 * rng.random()))
            if k == 0:
                return b""
        parts = [None] * (2 * k)
        parts[0::2] = rng.choices(self.heads, k=k)
        parts[1::2] = rng.choices(self.tails, k=k)
        block = b"".join(parts).replace(TS, self.fmt(t))
        if self.salted:
            block = block.replace(SALT, b"%06x" % ((t * 2654435761) & 0xFFFFFF))
        if self.iso:
            block = block.replace(b"\x02", ts_iso(t))
        return block


def stream(path, block, start, target, mode="wb"):
    """Append seconds of log to path from start until target bytes; returns next second."""
    t = start
    written = 0
    buf = []
    size = 0
    with open(path, mode, buffering=0) as f:
        while written + size < target:
            b = block.second(t)
            t += 1
            buf.append(b)
            size += len(b)
            if size >= FLUSH:
                f.write(b"".join(buf))
                written += size
                buf, size = [], 0
        if buf:
            f.write(b"".join(buf))
            written += size
    return t, written


def write_small(outdir, pools, seed, count):
    r = random.Random(f"{seed}:small")
    total = 0
    max_line = max(max(map(len, heads)) + max(map(len, tails)) for heads, tails in pools.values()) + 40
    for i in range(count):
        kind = r.choice(SMALL_KINDS)
        block = Block(pools, kind, r)
        target = r.randrange(1024 + max_line, 10 * 1024 + 1)
        t = START + r.randrange(0, 30 * 86400)
        parts = []
        size = 0
        while size < target:  # a few lines per second, one second at a time
            b = block.second(t, k=r.randrange(1, 4))
            parts.append(b)
            size += len(b)
            t += r.randrange(1, 30)
        data = b"".join(parts)
        data = data[: data.rfind(b"\n", 0, target) + 1]
        d = os.path.join(outdir, "small", "%03d" % (i // SMALL_PER_DIR))
        if i % SMALL_PER_DIR == 0:
            os.makedirs(d, exist_ok=True)
        name = "%s-%06d.%s" % (kind, i, SMALL_EXT[kind])
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def generate(args):
    out = args.outdir
    if os.path.isdir(out) and os.listdir(out):
        sys.exit(f"gen-corpus: {out} is not empty")
    pools = build_pools(args.seed)
    total_target = int((args.size_mib or 0) * MIB)
    t0 = time.monotonic()
    small = write_small(out, pools, args.seed, args.small_files) if args.small_files else 0
    if small > total_target and not args.small_only:
        print(f"gen-corpus: note: {args.small_files} small files alone exceed --size-mib {args.size_mib:g}",
              file=sys.stderr)
    large_target = 0 if args.small_only else max(0, total_target - small)
    total = small
    next_second = {}
    if args.single_file:
        os.makedirs(out, exist_ok=True)
        open(os.path.join(out, "all.log"), "wb").close()
    for name, kind, share in [] if args.small_only else LARGE:
        # --single-file: the same streams, one after the other in one file.
        path = os.path.join(out, "all.log" if args.single_file else name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rng = random.Random(f"{args.seed}:large:{name}")
        start = next_second.get(CONTINUES.get(name), START + rng.randrange(0, 3600))
        t, n = stream(path, Block(pools, kind, rng), start, int(large_target * share),
                      mode="ab" if args.single_file else "wb")
        next_second[name] = t
        total += n
    dt = time.monotonic() - t0
    files = (0 if args.small_only else 1 if args.single_file else len(LARGE)) + args.small_files
    print(f"gen-corpus: wrote {total / MIB:.1f} MiB in {files} files to {out} "
          f"in {dt:.1f} s ({total / MIB / max(dt, 1e-9):.0f} MiB/s)", file=sys.stderr)


def append(args):
    out = args.outdir
    pools = build_pools(args.seed)
    t0 = time.monotonic()
    total = 0
    live = [(name, kind) for name, kind, _share in LARGE if not name.endswith(".1")]
    for name, kind in live:
        path = os.path.join(out, name)
        if not os.path.exists(path):
            sys.exit(f"gen-corpus: {path} is missing: not a corpus made by gen-corpus.py")
        size = os.path.getsize(path)
        target = int(size * args.append_percent / 100)
        if target <= 0:
            continue
        start = last_timestamp(path, kind) + 1
        rng = random.Random(f"{args.seed}:append:{name}:{size}")
        _, n = stream(path, Block(pools, kind, rng), start, target, mode="ab")
        total += n
    dt = time.monotonic() - t0
    print(f"gen-corpus: appended {total / MIB:.1f} MiB ({args.append_percent:g}%) to {len(live)} files "
          f"in {out} in {dt:.1f} s", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir")
    p.add_argument("--size-mib", type=float, metavar="N", help="total size of a new corpus in MiB")
    p.add_argument("--small-files", type=int, default=2000, metavar="K", help="number of 1-10 KiB files under small/ (default 2000)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    p.add_argument("--small-only", action="store_true",
                   help="write only the --small-files K small files, no large files")
    p.add_argument("--single-file", action="store_true",
                   help="write the large files' bytes (--size-mib N) into one file, OUTDIR/all.log (no small files)")
    p.add_argument("--append-percent", type=float, metavar="P",
                   help="append P%% of their size to the live large files of an existing corpus")
    args = p.parse_args()
    if args.append_percent is not None:
        if args.size_mib is not None or args.small_only or args.single_file:
            p.error("--append-percent excludes --size-mib, --small-only and --single-file")
        if args.append_percent < 0:
            p.error("--append-percent must be >= 0")
        append(args)
    elif args.small_only:
        if args.size_mib is not None or args.single_file:
            p.error("--small-only excludes --size-mib and --single-file")
        if args.small_files <= 0:
            p.error("--small-only needs --small-files K (> 0)")
        generate(args)
    else:
        if args.size_mib is None or args.size_mib <= 0:
            p.error("--size-mib N (> 0) is required")
        if args.single_file:
            args.small_files = 0
        if args.small_files < 0:
            p.error("--small-files must be >= 0")
        generate(args)


if __name__ == "__main__":
    main()
