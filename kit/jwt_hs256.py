"""pyjwt, imported for HS256 only so that it does not load `cryptography`.

pyjwt imports `cryptography` whenever it is installed, to offer RSA and EC keys; its OpenSSL
bindings stay resident (≈ 11 MB) in every process that imports pyjwt. Minsheng signs and verifies
only HS256 tokens, which pyjwt computes with the standard library's `hmac`, so pyjwt is imported
with `cryptography` hidden. A process that has already loaded `cryptography` for its own use
(intake encrypts reporters' details with it) gets pyjwt as usual; either way only HS256 is accepted,
because every decode names its algorithms.
"""

import sys

if "jwt" in sys.modules or "cryptography" in sys.modules:
    import jwt
else:
    sys.modules["cryptography"] = None  # type: ignore[assignment]  # `import cryptography` now fails
    try:
        import jwt
    finally:
        del sys.modules["cryptography"]  # later imports (intake's field encryption) load it normally

__all__ = ["jwt"]
