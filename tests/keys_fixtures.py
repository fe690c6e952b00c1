#!/usr/bin/env python3
"""Key fixtures for tests/keys.rs, generated afresh on every run (no secret
is committed), with what implementations custody did not write compute for
them: RFC 7638 thumbprints (jwcrypto), SHA-256 of each SubjectPublicKeyInfo
and the FORMAT.md §9.12 commitment of each private key (pyca/cryptography),
the findings the snapshot must produce, and the secret bytes that must never
be found in the vault.

Usage: keys_fixtures.py OUT_DIR  (writes OUT_DIR/keys/ and OUT_DIR/expected.json)
"""

import base64
import datetime
import hashlib
import json
import os
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwcrypto import jwk

OUT = sys.argv[1]
KEYS = os.path.join(OUT, "keys")
os.makedirs(KEYS)
NOW = time.time()
DAY = 86400.0
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER
NONE = serialization.NoEncryption()

expected = {"files": {}, "findings": [], "secrets": [], "secret_files": {}}


def spki(pub):
    der = pub.public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def thumbprint(pub):
    return jwk.JWK.from_pyca(pub).thumbprint()


def int_bytes(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def commitment(priv):
    def c(alg, secret):
        return hashlib.sha256(
            b"custody key commitment v1\0" + alg.encode() + b"\0" + secret
        ).hexdigest()

    if isinstance(priv, rsa.RSAPrivateKey):
        n = priv.private_numbers()
        return c("rsa", int_bytes(min(n.p, n.q)))
    if isinstance(priv, ec.EllipticCurvePrivateKey):
        width = (priv.curve.key_size + 7) // 8
        return c("ec", priv.private_numbers().private_value.to_bytes(width, "big"))
    return c("ed25519", priv.private_bytes(serialization.Encoding.Raw,
                                           serialization.PrivateFormat.Raw, NONE))


NEEDLES = {}


def remember_secret(priv):
    """Byte strings of the private key that must not appear in the vault:
    its PKCS#8 DER and raw secret numbers, and each of them in base64 and
    base64url at all three byte alignments (PEM bodies, OpenSSH blobs, JWK
    members), which the test looks for with whitespace removed."""
    pkcs8 = priv.private_bytes(DER, serialization.PrivateFormat.PKCS8, NONE)
    raw = [pkcs8]
    if isinstance(priv, rsa.RSAPrivateKey):
        n = priv.private_numbers()
        raw += [int_bytes(n.d), int_bytes(n.p), int_bytes(n.q)]
    elif isinstance(priv, ec.EllipticCurvePrivateKey):
        width = (priv.curve.key_size + 7) // 8
        raw.append(priv.private_numbers().private_value.to_bytes(width, "big"))
    else:
        raw.append(priv.private_bytes(serialization.Encoding.Raw,
                                      serialization.PrivateFormat.Raw, NONE))
    needles = []
    for b in raw:
        needles.append(b)
        for shift in range(3):
            for enc in (base64.b64encode(b[shift:]),
                        base64.urlsafe_b64encode(b[shift:]).rstrip(b"=")):
                if len(enc) >= 28:
                    needles.append(enc[4:28])
    NEEDLES[id(priv)] = needles
    expected["secrets"] += [n.hex() for n in needles]


def holds_secret(name, *privs):
    """Records which needles the fixture file `name` holds; every secret
    fixture must hold at least one, or the search could not fail."""
    with open(os.path.join(KEYS, name), "rb") as f:
        data = f.read()
    stripped = b"".join(data.split())
    found = [n.hex() for p in privs for n in NEEDLES[id(p)] if n in data or n in stripped]
    assert found, f"no needle of {name} is in the file"
    expected["secret_files"][name] = found


def write(name, data, age_days=2.0):
    path = os.path.join(KEYS, name)
    with open(path, "wb") as f:
        f.write(data)
    t = NOW - age_days * DAY
    os.utime(path, (t, t))
    return path


def expect(name, form, content, keys):
    expected["files"][name] = {"form": form, "content": content, "keys": keys}


def key(pub, part, priv=None):
    return {
        "part": part,
        "spki_sha256": spki(pub),
        "jwk_thumbprint": thumbprint(pub),
        "commitment": commitment(priv) if priv is not None else None,
    }


def finding(kind, pub=None, path=None):
    expected["findings"].append(
        {"kind": kind, "spki_sha256": spki(pub) if pub is not None else None,
         "path": path})


# A: the RSA signing key, published, private in two places, never rotated.
a = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# B: an EC P-256 key, published, private as SEC1 and in a private JWKS.
b = ec.generate_private_key(ec.SECP256R1())
# C: published, private key nowhere among the sources.
c = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# D: a P-384 key, private, not published.
d = ec.generate_private_key(ec.SECP384R1())
# E: an OpenSSH deploy key.
e = ed25519.Ed25519PrivateKey.generate()
for k in (a, b, c, d, e):
    remember_secret(k)


def jwk_of(k, kid, alg, private=False):
    j = jwk.JWK.from_pyca(k)
    out = json.loads(j.export(private_key=private))
    out.update({"kid": kid, "use": "sig", "alg": alg})
    return out


write("jwks.json", json.dumps({"keys": [
    jwk_of(a.public_key(), "rsa-2023", "RS256"),
    jwk_of(b.public_key(), "ec-1", "ES256"),
    jwk_of(c.public_key(), "orphan", "RS256"),
]}, indent=2).encode())
expect("jwks.json", "public", "stored", [
    key(a.public_key(), "public"), key(b.public_key(), "public"),
    key(c.public_key(), "public")])

write("signing-rsa.pem",
      a.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NONE),
      age_days=3 * 365)
expect("signing-rsa.pem", "private", "sealed", [key(a.public_key(), "private", a)])
holds_secret("signing-rsa.pem", a)
write("backup-signing-rsa-pkcs1.pem",
      a.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, NONE))
expect("backup-signing-rsa-pkcs1.pem", "private", "sealed",
       [key(a.public_key(), "private", a)])
holds_secret("backup-signing-rsa-pkcs1.pem", a)

write("ec-b.pem", b.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, NONE))
expect("ec-b.pem", "private", "sealed", [key(b.public_key(), "private", b)])
holds_secret("ec-b.pem", b)
write("jwks-private.json",
      json.dumps({"keys": [jwk_of(b, "ec-1", "ES256", private=True)]}).encode())
expect("jwks-private.json", "private", "sealed", [key(b.public_key(), "private", b)])
holds_secret("jwks-private.json", b)

write("unpublished-p384.pem", d.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NONE))
expect("unpublished-p384.pem", "private", "sealed", [key(d.public_key(), "private", d)])
holds_secret("unpublished-p384.pem", d)

write("deploy_ed25519",
      e.private_bytes(PEM, serialization.PrivateFormat.OpenSSH, NONE))
expect("deploy_ed25519", "private", "sealed", [key(e.public_key(), "private", e)])
holds_secret("deploy_ed25519", e)
write("deploy_ed25519.pub",
      e.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                  serialization.PublicFormat.OpenSSH) + b" deploy@build\n")
expect("deploy_ed25519.pub", "public", "stored", [key(e.public_key(), "public")])

# A chain: leaf (expired), intermediate, root.
def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


now = datetime.datetime.now(datetime.timezone.utc)
root_k = ec.generate_private_key(ec.SECP256R1())
mid_k = ec.generate_private_key(ec.SECP256R1())
leaf_k = ec.generate_private_key(ec.SECP256R1())


def cert(subject, issuer, pub, signer, start, end, ca):
    return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
            .public_key(pub).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))


root = cert("Fixture Root", "Fixture Root", root_k.public_key(), root_k,
            now - datetime.timedelta(days=30), now + datetime.timedelta(days=3650), True)
mid = cert("Fixture Intermediate", "Fixture Root", mid_k.public_key(), root_k,
           now - datetime.timedelta(days=30), now + datetime.timedelta(days=1000), True)
leaf = cert("login.example", "Fixture Intermediate", leaf_k.public_key(), mid_k,
            now - datetime.timedelta(days=400), now - datetime.timedelta(days=10), False)
write("chain.pem", b"".join(x.public_bytes(PEM) for x in (leaf, mid, root)))
expect("chain.pem", "public", "stored", [
    dict(key(leaf_k.public_key(), "public"), serial=format(leaf.serial_number, "x"),
         chain_index=0, self_signed=False),
    dict(key(mid_k.public_key(), "public"), chain_index=1, self_signed=False),
    dict(key(root_k.public_key(), "public"), chain_index=2, self_signed=True)])

enc = rsa.generate_private_key(public_exponent=65537, key_size=2048)
remember_secret(enc)
write("encrypted.pem", enc.private_bytes(
    PEM, serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"correct horse battery staple")))
expect("encrypted.pem", "encrypted", "sealed", [{"part": "encrypted"}])

write("garbage.bin", os.urandom(3000))
expect("garbage.bin", "not_key_material", "sealed", [])

# Malformed files: recorded, never a crash.
whole = d.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NONE)
write("truncated.pem", whole[: len(whole) // 2])
expect("truncated.pem", "private", "sealed", [{"part": "private"}])
holds_secret("truncated.pem", d)
write("bad-base64.pem",
      b"-----BEGIN CERTIFICATE-----\n%%%% not base64 at all %%%%\n-----END CERTIFICATE-----\n")
expect("bad-base64.pem", "not_key_material", "sealed", [])
write("huge-length.der", bytes([0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0x02, 0x01, 0x00]))
expect("huge-length.der", "not_key_material", "sealed", [])

# Look public but are not: never stored in clear.
g = ed25519.Ed25519PrivateKey.generate()
remember_secret(g)
write("jwks-with-extra.json", json.dumps({
    "keys": [jwk_of(c.public_key(), "orphan", "RS256")],
    "signing_key_pem": g.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NONE).decode(),
}).encode())
expect("jwks-with-extra.json", "mixed", "sealed", [key(c.public_key(), "public")])
holds_secret("jwks-with-extra.json", g)

h = ec.generate_private_key(ec.SECP256R1())
remember_secret(h)
pem_lines = h.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NONE).split(b"\n")
write("blank-line.pem", b"\n".join(pem_lines[:2] + [b""] + pem_lines[2:]))
expect("blank-line.pem", "private", "sealed", [{"part": "private"}])
holds_secret("blank-line.pem", h)

i = ec.generate_private_key(ec.SECP256R1())
remember_secret(i)
cert_lines = root.public_bytes(PEM).strip().split(b"\n")
secret_body = i.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NONE).split(b"\n")[1:-2]
write("smuggled.pem", b"\n".join(cert_lines[:-1] + [cert_lines[-1] + b"x"] + secret_body
                                   + [cert_lines[-1], b""]))
expect("smuggled.pem", "not_key_material", "sealed", [])
holds_secret("smuggled.pem", i)

# A certificate that never expires (RFC 5280 §4.1.2.5: 99991231235959Z).
forever_k = ec.generate_private_key(ec.SECP256R1())
forever = cert("forever.example", "Fixture Root", forever_k.public_key(), root_k,
               now - datetime.timedelta(days=1),
               datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc),
               False)
write("forever.pem", forever.public_bytes(PEM))
expect("forever.pem", "public", "stored", [key(forever_k.public_key(), "public")])

# Changed after the incident's discovery (a day ago): a fresh public key.
f = ec.generate_private_key(ec.SECP256R1())
write("rotated-after.pub.pem", f.public_key().public_bytes(
    PEM, serialization.PublicFormat.SubjectPublicKeyInfo), age_days=0)
expect("rotated-after.pub.pem", "public", "stored", [key(f.public_key(), "public")])

finding("stale_key", a.public_key())
finding("stale_key", leaf_k.public_key())
finding("private_key_copies", a.public_key())
finding("private_key_copies", b.public_key())
finding("published_without_private", c.public_key())
finding("private_not_published", d.public_key())
finding("private_not_published", e.public_key())
finding("certificate_expired", leaf_k.public_key())
finding("modified_after_discovery", path="rotated-after.pub.pem")

expected["discovered_at"] = (now - datetime.timedelta(days=1)).isoformat()
with open(os.path.join(OUT, "expected.json"), "w") as out:
    json.dump(expected, out, indent=2)
