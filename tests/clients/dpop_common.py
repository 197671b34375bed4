"""What the DPoP corpus scripts share (dpop_proofs.py, dpop_http.py): base64url, the RFC 7638
thumbprint computed here without rmcp-authz, and a key's public JWK as PyJWT writes it."""

import base64
import hashlib
import json

import jwt


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict) -> str:
    required = {"EC": ["crv", "kty", "x", "y"], "RSA": ["e", "kty", "n"], "OKP": ["crv", "kty", "x"]}
    members = {m: jwk[m] for m in required[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64(hashlib.sha256(canonical.encode()).digest())


def jwk_of(key, alg: str) -> dict:
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    return json.loads(algorithm.to_jwk(key.public_key()))
