"""Identity attestations: verifying a provider's signed statement about an operator (DESIGN §8).

``verify`` holds the pure verifier and the key sources that feed it; ``devidp`` is the development identity
provider behind ``avatar-registry idp dev-keygen`` and ``idp dev-sign``.
"""

from __future__ import annotations

from registry.attestations.verify import (
    ALLOWED_ALGORITHMS,
    ATTESTATION_TYP,
    AttestationFailure,
    JwksFileSource,
    JwksUrlSource,
    KeySource,
    VerifiedAttestation,
    key_source_for,
    keysets_of,
    parse_jwks,
    verify_attestation,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "ATTESTATION_TYP",
    "AttestationFailure",
    "JwksFileSource",
    "JwksUrlSource",
    "KeySource",
    "VerifiedAttestation",
    "key_source_for",
    "keysets_of",
    "parse_jwks",
    "verify_attestation",
]
