"""Client certificates: which device one names, and whether a tenant's CA issued it.

The TLS listener has already checked the chain against every trusted CA;
here the certificate must come from the CA of the device's own tenant.
cryptography is imported on first use, so a gateway without certificate
tenants never loads it.
"""

from __future__ import annotations

from mqttproxy.errors import MqttProxyError


class CertificateError(MqttProxyError):
    """A client certificate that names no device or cannot be read."""


def device_id_of(der: bytes) -> str:
    """The device id a certificate names: its subject CN, else its first DNS name."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateError(f"unreadable certificate: {exc}") from exc
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise CertificateError("the certificate has neither a CN nor a DNS name") from None
    dns_names = alternatives.value.get_values_for_type(x509.DNSName)
    if not dns_names:
        raise CertificateError("the certificate has neither a CN nor a DNS name")
    return str(dns_names[0])


def issued_by(der: bytes, ca_pem: str) -> bool:
    """Whether ``ca_pem`` signed the certificate (directly)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        certificate = x509.load_der_x509_certificate(der)
        authority = x509.load_pem_x509_certificate(ca_pem.encode())
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
