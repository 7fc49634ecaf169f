"""Settings travel to uvicorn worker processes intact; the CLI refuses bad options in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestlens.cli import EXIT_BAD_INPUT, main
from chestlens.errors import ChestlensInputError
from chestlens.serve.jobs import owner_is_dead, owner_token
from chestlens.serve.settings import API_KEYS_ENV, MB, SETTINGS_ENV, ServeSettings


def test_settings_round_trip_through_the_environment(monkeypatch):
    settings = ServeSettings(
        data_dir=Path("/srv/x"),
        models=("xray3-screener",),
        cors_origins=("https://a.example",),
        api_keys=frozenset({"k1", "k2"}),
        max_batch=3,
    )
    monkeypatch.setenv(SETTINGS_ENV, settings.to_env())
    assert "k1" not in settings.to_env()  # keys travel only in their own variable
    monkeypatch.setenv(API_KEYS_ENV, "k1, k2,")
    assert ServeSettings.from_env() == settings


def test_settings_from_environment_variables(monkeypatch):
    for name, value in {
        "CHESTLENS_SERVE_MODELS": "xray3-screener, /srv/bundles/ct,",
        "CHESTLENS_SERVE_DATA_DIR": "/srv/y",
        "CHESTLENS_SERVE_DATABASE_URL": "postgresql+psycopg://chestlens@db/chestlens",
        "CHESTLENS_SERVE_MAX_UPLOAD_BYTES": str(5 * MB),
        "CHESTLENS_SERVE_MAX_BATCH": "4",
        "CHESTLENS_SERVE_BATCH_WAIT_MS": "2.5",
        "CHESTLENS_SERVE_CORS_ORIGINS": "https://a.example,https://b.example",
        "CHESTLENS_SERVE_DEVICE": "cuda:1",
        "CHESTLENS_SERVE_QUEUE_SIZE": "",  # empty: unset, the default
        "CHESTLENS_SERVE_API_KEYS": "not-a-key-source",  # keys come from CHESTLENS_API_KEYS only
        API_KEYS_ENV: "k1,k2",
    }.items():
        monkeypatch.setenv(name, value)
    settings = ServeSettings()
    assert settings == ServeSettings(
        models=("xray3-screener", "/srv/bundles/ct"),
        data_dir=Path("/srv/y"),
        database_url="postgresql+psycopg://chestlens@db/chestlens",
        max_upload_bytes=5 * MB,
        max_batch=4,
        batch_wait_ms=2.5,
        cors_origins=("https://a.example", "https://b.example"),
        device="cuda:1",
        api_keys=frozenset({"k1", "k2"}),
    )
    assert settings.queue_size == 64 and settings.url.startswith("postgresql")
    assert "k1" not in repr(settings)
    assert (
        ServeSettings(max_batch=2, api_keys=frozenset()).max_batch == 2
    )  # arguments win over the environment
    assert settings.replace(max_batch=6).max_batch == 6 and settings.max_batch == 4
    with pytest.raises(ValueError):
        settings.max_batch = 1  # type: ignore[misc]  (frozen)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "CHESTLENS_SERVE_MAX_BATCH",
            "abc",
            "CHESTLENS_SERVE_MAX_BATCH='abc': Input should be a valid integer",
        ),
        ("CHESTLENS_SERVE_QUEUE_SIZE", "0", "CHESTLENS_SERVE_QUEUE_SIZE='0': Input should be greater than"),
        (
            "CHESTLENS_SERVE_BATCH_WAIT_MS",
            "-1",
            "CHESTLENS_SERVE_BATCH_WAIT_MS='-1': Input should be greater",
        ),
        (
            "CHESTLENS_SERVE_DEVICE",
            "gpu",
            "CHESTLENS_SERVE_DEVICE='gpu': Value error, use auto, cpu, cuda or cuda:N",
        ),
    ],
)
def test_invalid_environment_values_are_one_line(name, value, message, monkeypatch, capsys):
    monkeypatch.setenv(name, value)
    with pytest.raises(ChestlensInputError) as caught:
        ServeSettings.load()
    assert str(caught.value).startswith("invalid serve settings: ") and message in str(caught.value)
    with pytest.raises(SystemExit) as exited:
        main(["serve"])  # refused before any model is loaded or a port is bound
    assert exited.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines() == [f"chestlens: error: {caught.value}"]
    assert message in err


def test_settings_errors_name_the_source_and_never_quote_keys(monkeypatch):
    with pytest.raises(
        ChestlensInputError, match=r"^invalid serve settings: max_batch=0: .*; unknown setting 'bogus'$"
    ):
        ServeSettings.load(max_batch=0, bogus=1)
    with pytest.raises(ChestlensInputError) as caught:
        ServeSettings.load(api_keys=[12345])
    assert str(caught.value) == "invalid serve settings: api_keys: Input should be a valid string"
    monkeypatch.setenv(SETTINGS_ENV, '{"max_batch": 2, "bogus": 1}')
    with pytest.raises(ChestlensInputError, match="unknown setting 'bogus'"):
        ServeSettings.from_env()
    monkeypatch.setenv(SETTINGS_ENV, "not json")
    with pytest.raises(ChestlensInputError, match=f"{SETTINGS_ENV} is not a JSON object"):
        ServeSettings.from_env()


def test_cli_options_win_over_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("CHESTLENS_SERVE_MAX_BATCH", "abc")  # overridden by --max-batch: never validated
    monkeypatch.setenv("CHESTLENS_SERVE_MODELS", "xray3-screener")
    with pytest.raises(SystemExit):
        main(["serve", "--max-batch", "2", "--models", "no-such-bundle"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-bundle" in err[0] and "not a bundle folder" in err[0]
    monkeypatch.setenv("CHESTLENS_SERVE_MODELS", "env-only-bundle")  # used when --models is not given
    with pytest.raises(SystemExit):
        main(["serve", "--max-batch", "2"])
    assert "env-only-bundle" in capsys.readouterr().err


def test_job_owners():
    me = owner_token()
    host, pid, _ = me.rsplit(":", 2)
    assert not owner_is_dead(me, me)
    assert owner_is_dead(f"{host}:{pid}:0ther", me)  # an earlier app in this process
    assert not owner_is_dead(f"elsewhere:{pid}:x", me)  # another host's job is left alone
    assert not owner_is_dead(f"{host}:1:x", me)  # pid 1 is alive


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "no-such-bundle"], "not a bundle folder nor a bundled model name"),
        (["--api-key-file", "/nonexistent/keys"], "cannot read the API key file"),
        (["--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without API keys"),
    ],
)
def test_cli_refuses_bad_options_in_one_line(args, message, capsys, monkeypatch):
    monkeypatch.delenv("CHESTLENS_API_KEYS", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["serve", *args])
    assert caught.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
