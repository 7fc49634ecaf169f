"""Issue 19, access control: roles (submitter, reader, admin) for API keys and OIDC/JWT bearer tokens,
results scoped by owner, the access log, and the OpenAPI document.

Model-less services (``models=()``: uploads are stored without a model run) on SQLite and PostgreSQL
(``database_url``), with the pip-shipped radiograph RG1_UNCR.dcm and CT slice CT_small.dcm.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from serve_helpers import assert_problem, wait_job, wait_ready
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.orm import Session

from chestlens.cli import EXIT_BAD_INPUT, main
from chestlens.errors import ChestlensInputError
from chestlens.serve.access_log import ACCESS_LOG_FILE
from chestlens.serve.app import create_app
from chestlens.serve.settings import JWT_SECRET_ENV, ServeSettings
from chestlens.serve.store import (
    JobOwnerRow,
    JobRow,
    OverlayRow,
    ScreeningOwnerRow,
    ScreeningRow,
    Store,
    new_id,
    utcnow,
)

KEYS = {
    "alice": "submitter:alice-k3y",
    "bob": "submitter:bob-k3y",
    "reader": "reader:reader-k3y",
    "admin": "admin:admin-k3y",
    "legacy": "legacy-admin-k3y",  # a bare key: admin, as every key was before roles
}
SECRET = "a-test-secret-of-at-least-32-bytes!!"
ISSUER, AUDIENCE = "https://idp.example/realms/chestlens", "chestlens"
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=b'


def _key(who: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[who].rpartition(":")[2]}


@contextmanager
def _service(tmp_path: Path, database_url: str | None = None, **settings: object) -> Iterator[TestClient]:
    values = {"data_dir": tmp_path / "data", "device": "cpu", "models": (), **settings}
    if database_url is not None:
        values["database_url"] = database_url
    with TestClient(create_app(ServeSettings(**values)), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def _upload(client: TestClient, data: bytes, headers: dict[str, str]):
    return client.post(
        "/api/v1/screenings", files={"file": ("Doe^Jane.dcm", data, "application/dicom")}, headers=headers
    )


def _stow_body(data: bytes) -> bytes:
    return b"--b\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--b--\r\n"


def _ids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json()}


# ----------------------------------------------------------------------------------------- API key roles
def test_each_role_sees_and_deletes_what_it_may(tmp_path, database_url, pip_dicom):
    radiograph = pip_dicom("RG1_UNCR.dcm").read_bytes()
    ct = pip_dicom("CT_small.dcm").read_bytes()
    with _service(tmp_path, database_url, api_keys=frozenset(KEYS.values())) as client:
        mine = _upload(client, radiograph, _key("alice")).json()["id"]
        theirs = _upload(client, radiograph, _key("bob")).json()["id"]
        store: Store = client.app.state.service.store
        legacy = new_id()  # a row made before roles: no owner
        store.add_screening(legacy, "screened", store.screening(mine).result_json, {"image": b"png"})
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as archive:
            archive.writestr("a.dcm", ct)
            archive.writestr("b.dcm", ct)
        job = _upload(client, zipped.getvalue(), _key("alice"))
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        stow = client.post(
            "/dicomweb/studies",
            content=_stow_body(radiograph),
            headers={"Content-Type": STOW_TYPE, **_key("alice")},
        )
        assert stow.status_code == 200, stow.text
        stowed = re.search(r"/api/v1/screenings/([0-9a-f]{32})", stow.headers["link"]).group(1)

        # worklists and CSV: a submitter sees its own, reader and admin everything
        finished = wait_job(client, f"/api/v1/jobs/{job_id}", headers=_key("alice"))
        assert finished["status"] == "done", finished
        from_job = {finished["screening_id"]}  # the job's screening has the job's owner
        assert _ids(client.get("/api/v1/screenings", headers=_key("alice"))) == {mine, stowed} | from_job
        assert _ids(client.get("/api/v1/screenings", headers=_key("bob"))) == {theirs}
        everything = {mine, theirs, legacy, stowed} | from_job
        for who in ("reader", "admin", "legacy"):
            assert _ids(client.get("/api/v1/screenings", headers=_key(who))) == everything
        csv = client.get("/api/v1/screenings.csv", headers=_key("bob")).text
        assert theirs in csv and mine not in csv and legacy not in csv

        # another's screening, overlay or job answers 404, as an unknown id does
        for path in (f"/api/v1/screenings/{mine}", f"/api/v1/screenings/{mine}/overlays/image"):
            assert client.get(path, headers=_key("alice")).status_code == 200
            assert client.get(path, headers=_key("reader")).status_code == 200
            assert_problem(client.get(path, headers=_key("bob")), 404, mine)
        assert_problem(client.get(f"/api/v1/screenings/{legacy}", headers=_key("bob")), 404)
        assert client.get(f"/api/v1/jobs/{job_id}", headers=_key("reader")).status_code == 200
        assert_problem(client.get(f"/api/v1/jobs/{job_id}", headers=_key("bob")), 404, f"no job {job_id}")

        # delete: a reader may not (403), a submitter only its own (another's is 404), an admin anything
        assert_problem(
            client.delete(f"/api/v1/screenings/{mine}", headers=_key("reader")), 403, "reader role"
        )
        assert_problem(client.delete(f"/api/v1/screenings/{mine}", headers=_key("bob")), 404)
        assert_problem(client.delete(f"/api/v1/screenings/{legacy}", headers=_key("alice")), 404)
        assert client.delete(f"/api/v1/screenings/{mine}", headers=_key("alice")).status_code == 204
        for gone in (theirs, legacy):
            assert client.delete(f"/api/v1/screenings/{gone}", headers=_key("admin")).status_code == 204
        assert _ids(client.get("/api/v1/screenings", headers=_key("admin"))) == {stowed} | from_job

        # owners are hashed principal ids: never the key, nor its plain fingerprint
        with Session(store.engine) as session:
            owners = set(session.scalars(select(ScreeningOwnerRow.principal)))
            owners |= set(session.scalars(select(JobOwnerRow.principal)))
            left = set(session.scalars(select(ScreeningOwnerRow.screening_id)))
        assert left == {stowed} | from_job and len(owners) == 1
        (owner,) = owners
        assert re.fullmatch(r"[0-9a-f]{16}", owner)
        assert owner not in hashlib.sha256(b"alice-k3y").hexdigest()


def test_a_database_from_before_roles_gets_the_owner_tables(tmp_path, database_url, pip_dicom):
    """No migrations: the owner tables are new tables, which ``create_all`` adds to an existing database;
    the rows made before roles have no owner and are seen by reader and admin only."""
    with _service(tmp_path / "first") as client:  # any stored result, for its JSON
        made = _upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes(), {}).json()["id"]
        result_json = client.app.state.service.store.screening(made).result_json
    engine = create_engine(database_url)
    old_tables = [ScreeningRow.__table__, OverlayRow.__table__, JobRow.__table__]
    ScreeningRow.metadata.create_all(engine, tables=old_tables)  # the schema before roles
    old = new_id()
    with Session(engine) as session, session.begin():
        session.add(ScreeningRow(id=old, created_at=utcnow(), status="screened", result_json=result_json))
    assert not inspect(engine).has_table("screening_owners")
    engine.dispose()
    with _service(tmp_path, database_url, api_keys=frozenset(KEYS.values())) as client:
        assert _ids(client.get("/api/v1/screenings", headers=_key("alice"))) == set()
        assert _ids(client.get("/api/v1/screenings", headers=_key("reader"))) == {old}
        mine = _upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes(), _key("alice")).json()["id"]
        assert _ids(client.get("/api/v1/screenings", headers=_key("alice"))) == {mine}
        assert client.get(f"/api/v1/screenings/{old}", headers=_key("admin")).status_code == 200


def test_without_credentials_everyone_is_admin_and_results_have_no_owner(tmp_path, database_url, pip_dicom):
    with _service(tmp_path, database_url) as client:
        made = _upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes(), {}).json()["id"]
        assert _ids(client.get("/api/v1/screenings")) == {made}
        store: Store = client.app.state.service.store
        assert store.screening(made).principal is None
        assert client.delete(f"/api/v1/screenings/{made}").status_code == 204
    (entry,) = [json.loads(line) for line in (tmp_path / "data" / ACCESS_LOG_FILE).read_text().splitlines()][
        :1
    ]
    assert entry["principal"] == "anonymous" and entry["role"] == "admin"


def test_401_and_403_are_problem_documents(tmp_path):
    with _service(tmp_path, api_keys=frozenset(KEYS.values())) as client:
        assert_problem(client.get("/api/v1/screenings"), 401, "^send a valid X-API-Key header$")
        assert_problem(client.get("/api/v1/screenings", headers={"X-API-Key": "alice-k3y "}), 401)
        assert_problem(client.get("/api/v1/screenings", headers={"Authorization": "Bearer x.y.z"}), 401)
        body = assert_problem(client.delete(f"/api/v1/screenings/{new_id()}", headers=_key("reader")), 403)
        assert body["title"] == "Forbidden" and "submitter, admin" in body["detail"]
        assert client.get("/api/v1/models", headers=_key("alice")).status_code == 200
        assert client.get("/", headers={}).status_code == 200  # the page itself needs no key


# ----------------------------------------------------------------------------------------- bearer tokens
def _token(key, algorithm: str = "HS256", kid: str | None = None, **claims: object) -> str:
    """A token for ``ISSUER``/``AUDIENCE``, valid for 5 minutes; a claim given as None is left out."""
    now = datetime.now(UTC)
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now + timedelta(minutes=5), **claims}
    headers = {"kid": kid} if kid else None
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm, headers=headers)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_hs256_tokens_roles_and_refusals(tmp_path, pip_dicom):
    settings = {"jwt_secret": SECRET, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    with _service(tmp_path, **settings) as client:
        alice = _bearer(_token(SECRET, roles=["submitter", "offline_access"]))
        made = _upload(client, pip_dicom("RG1_UNCR.dcm").read_bytes(), alice).json()["id"]
        assert _ids(client.get("/api/v1/screenings", headers=alice)) == {made}
        other = _bearer(_token(SECRET, sub="user-2", roles="submitter"))  # a space-separated string works too
        assert _ids(client.get("/api/v1/screenings", headers=other)) == set()
        assert_problem(client.get(f"/api/v1/screenings/{made}", headers=other), 404)
        reader = _bearer(_token(SECRET, sub="user-3", roles=["reader", "submitter"]))  # the highest counts
        assert _ids(client.get("/api/v1/screenings", headers=reader)) == {made}
        assert_problem(client.delete(f"/api/v1/screenings/{made}", headers=reader), 403, "reader role")

        refused = {
            "expired": (
                _token(SECRET, roles=["admin"], exp=datetime.now(UTC) - timedelta(hours=1)),
                "expired",
            ),
            "audience": (_token(SECRET, roles=["admin"], aud="another-app"), "another audience"),
            "issuer": (_token(SECRET, roles=["admin"], iss="https://evil.example"), "another issuer"),
            "signature": (_token("another-secret-of-at-least-32-bytes!!", roles=["admin"]), "signature"),
            "no sub": (_token(SECRET, roles=["admin"], sub=None), "no 'sub' claim"),
            "no exp": (_token(SECRET, roles=["admin"], exp=None), "no 'exp' claim"),
            "malformed": ("not-a-jwt", "malformed"),
            "alg none": (jwt.encode({"sub": "x", "roles": ["admin"]}, None, "none"), "algorithm|malformed"),
        }
        for name, (token, reason) in refused.items():
            response = client.get("/api/v1/screenings", headers=_bearer(token))
            assert_problem(response, 401, reason)
            assert response.headers["www-authenticate"].startswith("Bearer"), name
            assert token not in response.text, name
        no_roles = client.get("/api/v1/screenings", headers=_bearer(_token(SECRET)))
        assert_problem(no_roles, 403, "grants no chestlens role \\(claim 'roles'\\)")
        assert_problem(client.get("/api/v1/screenings"), 401, "Authorization: Bearer")


def _pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_rs256_with_a_public_key_file_and_a_nested_roles_claim(tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "idp.pem").write_bytes(_pem(private))
    settings = {
        "jwt_public_key_file": tmp_path / "idp.pem",
        "jwt_audience": AUDIENCE,
        "jwt_roles_claim": "realm_access.roles",
        "jwt_role_map": ("chestlens-radiologist=reader", "chestlens-ops=admin"),
    }
    with _service(tmp_path, **settings) as client:
        token = _token(
            private, "RS256", realm_access={"roles": ["chestlens-radiologist", "uma_authorization"]}
        )
        assert client.get("/api/v1/screenings", headers=_bearer(token)).status_code == 200
        plain = _token(private, "RS256", realm_access={"roles": ["reader"]})  # not in the map: no role
        assert_problem(client.get("/api/v1/screenings", headers=_bearer(plain)), 403, "realm_access.roles")
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = _token(other, "RS256", realm_access={"roles": ["chestlens-ops"]})
        assert_problem(client.get("/api/v1/screenings", headers=_bearer(forged)), 401, "signature")
        hs = _token(SECRET, realm_access={"roles": ["chestlens-ops"]})  # HS256 is not accepted with a key
        assert_problem(client.get("/api/v1/screenings", headers=_bearer(hs)), 401, "algorithm")


def test_es256_from_a_jwks_file_by_key_id(tmp_path):
    signing = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing.public_key()))
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rotated.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "new"}, {**old, "kid": "old"}]}))
    with _service(tmp_path, jwt_jwks_file=tmp_path / "jwks.json") as client:
        for key, algorithm, kid in ((signing, "ES256", "new"), (rotated, "RS256", "old")):
            token = _token(key, algorithm, roles=["admin"], kid=kid)
            assert client.get("/api/v1/screenings", headers=_bearer(token)).status_code == 200
        unknown = _token(signing, "ES256", roles=["admin"], kid="gone")
        assert_problem(client.get("/api/v1/screenings", headers=_bearer(unknown)), 401, "key this server")


def test_keys_and_tokens_together_and_the_openapi_document(tmp_path):
    with _service(tmp_path, api_keys=frozenset(KEYS.values()), jwt_secret=SECRET) as client:
        schema = client.get("/api/v1/openapi.json", headers=_key("alice")).json()
        assert (
            client.get("/api/v1/screenings", headers=_bearer(_token(SECRET, roles=["reader"]))).status_code
            == 200
        )
    schemes = schema["components"]["securitySchemes"]
    assert schemes["APIKey"]["in"] == "header" and schemes["APIKey"]["name"] == "X-API-Key"
    assert schemes["Bearer"] == {
        **schemes["Bearer"],
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    operations = {
        f"{method.upper()} {path}": operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith(("/api/", "/dicomweb/"))
    }
    assert len(operations) >= 9
    for name, operation in operations.items():
        assert operation["security"] == [{"APIKey": []}, {"Bearer": []}], name
        assert re.search(r"Role: (submitter|reader|admin)", operation["description"]), name
        assert {"401", "403"} <= set(operation["responses"]), name
        assert "expired" in operation["responses"]["401"]["description"], name
        assert "role" in operation["responses"]["403"]["description"], name
    assert "A reader gets 403" in operations["DELETE /api/v1/screenings/{screening_id}"]["description"]


# ----------------------------------------------------------------------------------------- the access log
def test_the_access_log_records_who_did_what_without_secrets_or_names(tmp_path, database_url, pip_dicom):
    radiograph = pip_dicom("RG1_UNCR.dcm").read_bytes()
    token = _token(SECRET, roles=["submitter"], sub="jane.doe@hospital.example")
    with _service(tmp_path, database_url, api_keys=frozenset(KEYS.values()), jwt_secret=SECRET) as client:
        made = _upload(client, radiograph, _key("alice")).json()["id"]
        client.get(f"/api/v1/screenings/{made}", headers=_bearer(token))  # 404: not the token's
        client.get("/api/v1/screenings?limit=5", headers={"X-API-Key": "wrong-k3y"})  # 401
        client.delete(f"/api/v1/screenings/{made}", headers=_key("reader"))  # 403
        client.post(
            "/dicomweb/studies/1.2.840.99999.12345",
            content=_stow_body(radiograph),
            headers={"Content-Type": STOW_TYPE, **_key("admin")},
        )
        client.get("/healthz")  # not an API route: not recorded
        store: Store = client.app.state.service.store
        alice = store.screening(made).principal
    path = tmp_path / "data" / ACCESS_LOG_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    summary = [(e["method"], e["route"], e["status"], e["role"]) for e in entries]
    assert summary == [
        ("POST", "/api/v1/screenings", 200, "submitter"),
        ("GET", "/api/v1/screenings/{screening_id}", 404, "submitter"),
        ("GET", "/api/v1/screenings", 401, None),
        ("DELETE", "/api/v1/screenings/{screening_id}", 403, "reader"),
        ("POST", "/dicomweb/studies/{study}", 409, "admin"),  # RG1 is of another study
    ]
    assert entries[0]["principal"] == alice and entries[0]["screening_id"] == made
    assert entries[1]["screening_id"] == made and entries[1]["principal"] not in (alice, "anonymous")
    assert entries[2]["principal"] == "anonymous"
    assert all(
        set(e) >= {"time", "principal", "role", "method", "route", "status", "request_id"} for e in entries
    )
    for secret in ("k3y", token, "jane.doe", "Doe^Jane", "1.2.840.99999", "limit=5", SECRET):
        assert secret not in text, secret


# ----------------------------------------------------------------------------------------- configuration
def _cli_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *args])
    assert exited.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "admin:ok-k3y\nviewer:s3cret-k3y\n",
            "API key file line 2: unknown role 'viewer' (roles: submitter, reader",
        ),
        ("# keys\n\nreader:\n", "API key file line 3: a reader entry has no key"),
        ("Zz9/+x:s3cret-k3y\n", "API key file line 1: unknown role (roles: submitter, reader, admin)"),
        ("submitter:s3cret,k3y\n", "API key file line 1: a key cannot contain ',' or ':'"),
        ("reader:s3cret-k3y\nadmin:s3cret-k3y\n", "the same key is given as reader and as admin"),
    ],
)
def test_key_file_errors_are_one_line_without_the_key(lines, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CHESTLENS_API_KEYS", raising=False)
    (tmp_path / "keys").write_text(lines)
    error = _cli_error(capsys, "--api-key-file", str(tmp_path / "keys"))
    assert message in error and "s3cret" not in error and "k3y" not in error


def test_bad_token_settings_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CHESTLENS_API_KEYS", raising=False)
    monkeypatch.delenv(JWT_SECRET_ENV, raising=False)
    (tmp_path / "secret").write_text("short")
    (tmp_path / "not.pem").write_text("hello")
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    private = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "p384.pem").write_bytes(_pem(private))
    cases = {
        ("--jwt-secret-file", str(tmp_path / "secret")): "the JWT secret must have at least 32 bytes",
        ("--jwt-public-key-file", str(tmp_path / "not.pem")): "is not a PEM public key",
        ("--jwt-public-key-file", str(tmp_path / "p384.pem")): "must be RSA (RS256) or EC P-256 (ES256)",
        ("--jwt-jwks-file", str(tmp_path / "jwks.json")): "only RSA and EC public keys are accepted",
        ("--jwt-jwks-file", str(tmp_path / "none.json")): "cannot read the JWKS file",
        ("--jwt-issuer", ISSUER): "need a token key",
        ("--jwt-secret-file", str(tmp_path / "secret"), "--jwt-jwks-file", "x"): "give one of jwt_secret",
        ("--jwt-jwks-file", "x", "--jwt-role-map", "ops=root"): "unknown role 'root'",
    }
    for args, message in cases.items():
        assert message in _cli_error(capsys, *args), args
    monkeypatch.setenv("CHESTLENS_API_KEYS", "admin:ok-k3y,boss:s3cret-k3y")
    error = _cli_error(capsys)
    assert "CHESTLENS_API_KEYS: Value error, unknown role 'boss'" in error and "k3y" not in error


def test_refuses_a_public_address_without_credentials(capsys, monkeypatch):
    monkeypatch.delenv("CHESTLENS_API_KEYS", raising=False)
    assert "without API keys or bearer tokens" in _cli_error(capsys, "--host", "0.0.0.0")


def test_settings_carry_the_secrets_to_workers_only_in_their_variables(monkeypatch):
    settings = ServeSettings(api_keys=frozenset({"reader:r-k3y", "a-k3y"}), jwt_secret=SECRET, models=())
    assert SECRET not in settings.to_env() and "k3y" not in settings.to_env() and SECRET not in repr(settings)
    for name, value in settings.secrets_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHESTLENS_SERVE_SETTINGS", settings.to_env())
    assert ServeSettings.from_env() == settings
    with pytest.raises(ChestlensInputError, match=r"jwt_secret: Input should be a valid string$"):
        ServeSettings.load(jwt_secret=12345)
