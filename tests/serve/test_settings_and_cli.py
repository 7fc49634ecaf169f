"""Settings travel to uvicorn worker processes intact; the CLI refuses bad options in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestlens.cli import EXIT_BAD_INPUT, main
from chestlens.serve.jobs import owner_is_dead, owner_token
from chestlens.serve.settings import API_KEYS_ENV, SETTINGS_ENV, ServeSettings


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
    ],
)
def test_cli_refuses_bad_options_in_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["serve", *args])
    assert caught.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
