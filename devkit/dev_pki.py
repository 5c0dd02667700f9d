"""A development certificate authority and the certificates it signs, made with ``cryptography``.

For the local broker, the tests' broker and a local intake served over TLS: a CA (its key never leaves the
secrets folder), and leaf certificates for loopback names. Everything is written into an ignored folder
(``<state_dir>/secrets``) on first use and reused after; nothing here is used by a production deployment, which
brings its own PKI (docs/security.md).
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signalements.private_files import write_private
from signalements.settings import Settings

LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")
VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf certificate and its key as PEM files; ``bundle`` holds the key then the certificate (Kafka's PEM store)."""

    certificate: Path
    key: Path
    bundle: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8, unencrypted: the folder is private to the developer, and Kafka's PEM key store reads PKCS#8.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "signalements (development)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


class DevelopmentCA:
    """The CA of one secrets folder: ``ca.crt`` (what clients trust) and ``ca.key``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def certificate_file(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def _key_file(self) -> Path:
        return self.folder / "ca.key"

    def ensure(self) -> DevelopmentCA:
        if self.certificate_file.exists() and self._key_file.exists():
            return self
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("signalements development CA"))
            .issuer_name(_name("signalements development CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        write_private(self._key_file, _pem_key(key))
        self.certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return self

    def issue(self, common_name: str, *, server: bool = True, client: bool = False,
              dns_names: tuple[str, ...] = ()) -> IssuedCertificate:
        """A certificate for ``common_name`` valid for the loopback names (and ``dns_names``), kept if issued."""
        issued = IssuedCertificate(self.folder / f"{common_name}.crt", self.folder / f"{common_name}.key",
                                   self.folder / f"{common_name}.pem")
        if issued.certificate.exists() and issued.key.exists() and issued.bundle.exists():
            return issued
        ca_key = serialization.load_pem_private_key(self._key_file.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_certificate = x509.load_pem_x509_certificate(self.certificate_file.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in (*LOOPBACK_NAMES, *dns_names)]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in LOOPBACK_ADDRESSES]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
        write_private(issued.key, _pem_key(key))
        write_private(issued.bundle, _pem_key(key) + certificate_pem)
        issued.certificate.write_bytes(certificate_pem)
        return issued


def new_password() -> str:
    """A random password for a development principal (URL-safe: no quoting needed in a JAAS line)."""
    return secrets.token_urlsafe(24)


def ensure_identifier_key(path: Path) -> bool:
    """The deduplication's HMAC key (32 random bytes, base64), made if missing; True if made now."""
    if path.exists():
        return False
    import base64

    write_private(path, base64.b64encode(secrets.token_bytes(32)) + b"\n")
    return True


DEVELOPMENT_KEY_ID = "dev-1"


def ensure_development_secrets(settings: Settings) -> None:
    """What a development worker and unit need beside the broker's: the deduplication's HMAC key, and a key pair
    per force sealing reporters' contacts."""
    from schemas.channels import Force
    from signalements.reporter_sealing import write_key_pair

    ensure_identifier_key(settings.dedup_identifier_key_path)
    for force in Force:
        write_key_pair(settings.reporter_keys_path, force, DEVELOPMENT_KEY_ID)
