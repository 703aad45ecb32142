"""JWT authentication and authorization of the HTTP API."""

from __future__ import annotations

import secrets

import jwt
import pytest

from fixtures.auth import AuthKeys
from fixtures.neon_fixtures import NeonEnv, NeonEnvBuilder, raw_request
from fixtures.pageserver_http import PageserverApiException


@pytest.fixture
def auth_env(neon_env_builder: NeonEnvBuilder) -> NeonEnv:
    neon_env_builder.auth_enabled = True
    neon_env_builder.pageserver_config_overrides["max_request_body_bytes"] = 4096
    return neon_env_builder.init_start()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_public_routes_need_no_token(auth_env: NeonEnv):
    port = auth_env.pageserver.http_port
    for path in ("/v1/status", "/health", "/liveness", "/readiness", "/metrics"):
        assert raw_request("GET", port, path).status_code == 200, path


def test_missing_malformed_expired_and_forged_tokens_are_401(auth_env: NeonEnv):
    port = auth_env.pageserver.http_port
    keys = auth_env.auth_keys
    tenant_id = auth_env.pageserver.http_client().tenant_create()
    cases = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {keys.admin_token()}"},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": bearer("not.a.jwt"),
        "expired": bearer(keys.expired_token()),
        "other key": bearer(AuthKeys().admin_token()),
        "bad scope": bearer(keys.token("superuser")),
        "hs256": bearer(
            jwt.encode({"scope": "pageserverapi"}, "a-shared-secret-of-sufficient-length!", algorithm="HS256")
        ),
    }
    for name, headers in cases.items():
        for method, path in (
            ("GET", "/v1/tenant/"),
            ("POST", "/v1/tenant/"),
            ("GET", f"/v1/tenant/{tenant_id}"),
            ("GET", f"/v1/tenant/{tenant_id}/timeline"),
        ):
            res = raw_request(method, port, path, headers=headers, json={})
            assert res.status_code == 401, f"{name}: {method} {path}: {res.status_code} {res.text}"
            assert res.json()["msg"], name
    res = raw_request("GET", port, "/v1/tenant/", headers=bearer(keys.expired_token()))
    assert "expired" in res.json()["msg"]
    res = raw_request("GET", port, "/v1/tenant/")
    assert "missing authorization" in res.json()["msg"]


def test_scopes(auth_env: NeonEnv):
    ps = auth_env.pageserver
    keys = auth_env.auth_keys
    admin = ps.http_client()
    t1 = admin.tenant_create()
    t2 = admin.tenant_create()
    tl1 = admin.timeline_create(t1)["timeline_id"]

    own = ps.http_client(auth_token=keys.tenant_token(t1))
    # A tenant token reaches its own tenant...
    assert own.tenant_status(t1)["id"] == t1
    assert own.tenant_config(t1)["tenant_specific_overrides"] == {}
    created = own.timeline_create(t1)["timeline_id"]
    assert {t["timeline_id"] for t in own.timeline_list(t1)} == {tl1, created}
    assert own.timeline_detail(t1, tl1)["timeline_id"] == tl1
    own.timeline_delete(t1, created)

    # ...but not another tenant, nor node-wide routes.
    for call in (
        lambda: own.tenant_status(t2),
        lambda: own.timeline_list(t2),
        lambda: own.timeline_create(t2),
        lambda: own.tenant_list(),
        lambda: own.tenant_create(),
        lambda: own.tenant_delete(t1),
        lambda: own.set_tenant_config(t1, {}),
    ):
        with pytest.raises(PageserverApiException) as e:
            call()
        assert e.value.status_code == 403, e.value
    with pytest.raises(PageserverApiException) as e:
        own.tenant_status(t2)
    assert t1 in e.value.msg and t2 in e.value.msg

    # A tenant token without tenant_id, and generations_api tokens, are refused.
    for token in (keys.token("tenant"), keys.token("generations_api")):
        client = ps.http_client(auth_token=token)
        for call in (lambda: client.tenant_status(t1), lambda: client.tenant_list()):
            with pytest.raises(PageserverApiException) as e:
                call()
            assert e.value.status_code == 403

    # pageserverapi reaches everything.
    assert {t["id"] for t in admin.tenant_list()} == {t1, t2}
    admin.tenant_delete(t2)


def test_auth_is_checked_before_the_body(auth_env: NeonEnv):
    port = auth_env.pageserver.http_port
    keys = auth_env.auth_keys
    big = b"{" + b" " * 10000 + b"}"
    # No token: 401 even though the body is oversized or malformed.
    assert raw_request("POST", port, "/v1/tenant/", data=big).status_code == 401
    assert raw_request("POST", port, "/v1/tenant/", data=b"{nonsense").status_code == 401
    # Wrong tenant: 403 before the body is looked at.
    tenant_id = auth_env.pageserver.http_client().tenant_create()
    other = keys.tenant_token(secrets.token_hex(16))
    res = raw_request("POST", port, f"/v1/tenant/{tenant_id}/timeline/", data=big, headers=bearer(other))
    assert res.status_code == 403
    # Authorized: now the size cap applies.
    res = raw_request("POST", port, "/v1/tenant/", data=big, headers=bearer(keys.admin_token()))
    assert res.status_code == 413, res.text
    assert "4096" in res.json()["msg"]
    # Bad tenant id in the path with a tenant token: 400 after authentication.
    res = raw_request("GET", port, "/v1/tenant/zzz", headers=bearer(keys.tenant_token(tenant_id)))
    assert res.status_code == 400
