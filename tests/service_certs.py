"""Certificates for tests/service.rs, made with pyca/cryptography.

Usage: service_certs.py DIR NAME...

Writes into DIR (keys mode 0600, EC P-256, PKCS#8 PEM):
  ca.pem                       the test CA
  server.pem server.key        CN=localhost, SAN localhost and 127.0.0.1
  NAME.pem NAME.key            a client certificate with CN=NAME, per NAME
  expired.pem expired.key      CN=<first NAME>, from the CA, expired yesterday
  rogue.pem rogue.key          CN=admin, from another CA the server never saw
"""

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_key(path, key):
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_cert(path, cert):
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def leaf(ca_key, ca_cert, cn, server, not_before, not_after):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, b.sign(ca_key, hashes.SHA256())


def main():
    out = sys.argv[1]
    names = sys.argv[2:]
    ca_key, ca = make_ca("custody test CA")
    write_cert(os.path.join(out, "ca.pem"), ca)
    key, cert = leaf(ca_key, ca, "localhost", True, NOW - DAY, NOW + 30 * DAY)
    write_cert(os.path.join(out, "server.pem"), cert)
    write_key(os.path.join(out, "server.key"), key)
    for n in names:
        key, cert = leaf(ca_key, ca, n, False, NOW - DAY, NOW + 30 * DAY)
        write_cert(os.path.join(out, n + ".pem"), cert)
        write_key(os.path.join(out, n + ".key"), key)
    key, cert = leaf(ca_key, ca, names[0], False, NOW - 10 * DAY, NOW - DAY)
    write_cert(os.path.join(out, "expired.pem"), cert)
    write_key(os.path.join(out, "expired.key"), key)
    other_key, other = make_ca("another CA")
    key, cert = leaf(other_key, other, "admin", False, NOW - DAY, NOW + 30 * DAY)
    write_cert(os.path.join(out, "rogue.pem"), cert)
    write_key(os.path.join(out, "rogue.key"), key)


if __name__ == "__main__":
    main()
