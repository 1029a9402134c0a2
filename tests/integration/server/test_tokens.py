"""Every bad token gets the same opaque 401 (FEATURES V), and the state is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mitosis_server.services.tokens import Claims, TokenSigner


async def _status(client, token: str) -> tuple[int, dict]:
    response = await client._http.get(
        "/api/auth/whoami", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, response.json()


def _signer(settings) -> TokenSigner:
    return TokenSigner.from_files(settings.private_key_path, settings.public_key_path)


def _claims_of(signer: TokenSigner, token: str) -> Claims:
    return signer.verify(token)


async def test_tampered_token(admin):
    header, payload, signature = admin.token.split(".")
    forged = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"ver":0', b'"ver":1')
    ).decode()
    status, body = await _status(admin, f"{header}.{forged}.{signature}")
    assert (status, body["error"]) == (401, "unauthorized")


async def test_garbage_and_missing_tokens(admin):
    for token in ("garbage", "a.b.c", ""):
        status, _ = await _status(admin, token)
        assert status == 401


async def test_token_signed_by_another_key(admin, settings):
    claims = _claims_of(_signer(settings), admin.token)
    other = Ed25519PrivateKey.generate()
    token = jwt.encode(
        {
            "iss": "mitosis",
            "sub": claims.username,
            "uid": claims.user_id,
            "sid": claims.session_id,
            "ver": claims.version,
            "exp": claims.expires_at,
        },
        other,
        algorithm="EdDSA",
    )
    status, body = await _status(admin, token)
    assert status == 401
    assert body["message"] == "invalid or expired token; log in again"


async def test_expired_token(admin, settings):
    signer = _signer(settings)
    claims = _claims_of(signer, admin.token)
    expired = Claims(
        user_id=claims.user_id,
        username=claims.username,
        session_id=claims.session_id,
        version=claims.version,
        expires_at=datetime.now(UTC) - timedelta(minutes=5),
    )
    status, body = await _status(admin, signer.sign(expired))
    assert status == 401
    assert body["message"] == "invalid or expired token; log in again"


async def test_hs256_token_with_public_key_as_secret_is_refused(admin, settings):
    """The classic algorithm-confusion attack: only EdDSA is accepted."""
    claims = _claims_of(_signer(settings), admin.token)
    secret = settings.public_key_path.read_bytes()
    with pytest.raises(jwt.exceptions.InvalidKeyError):
        # pyjwt itself refuses to HMAC with a PEM key; build the token by hand instead.
        jwt.encode({"sub": claims.username}, secret, algorithm="HS256")
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}').decode()
    body = jwt.utils.base64url_encode(
        f'{{"iss":"mitosis","sub":"{claims.username}","uid":{claims.user_id},'
        f'"sid":"{claims.session_id}","ver":0,"exp":9999999999}}'.encode()
    ).decode()
    import hashlib
    import hmac

    signature = jwt.utils.base64url_encode(
        hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    ).decode()
    status, _ = await _status(admin, f"{header}.{body}.{signature}")
    assert status == 401
