"""The whole pipeline on the corpus: `hwc-watcher inspect --json` gives the expected verdict for every mail."""

from __future__ import annotations

import json
import pathlib

import pytest
from corpus_cases import CASES, copy_config, expected

from hwc_watcher.commands.cli import main

COMPARED = ("verdict", "reason", "pupils", "receipt_to")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return copy_config(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_inspect_matches_expected(path: pathlib.Path, config: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """inspect --json reports the expected verdict, reason, pupils and receipt address; extra keys are ignored."""
    want = expected(path)
    assert main(["--config", str(config), "inspect", "--json", str(path)]) == 0
    output = json.loads(capsys.readouterr().out)
    output["pupils"] = [{k: p[k] for k in ("name", "birth_date")} for p in output["pupils"]]
    assert {key: output.get(key) for key in COMPARED} == {key: want[key] for key in COMPARED}


def test_corpus_is_large_enough() -> None:
    """At least 40 realistic messages, each with its expectation beside it."""
    assert len(CASES) >= 40
    assert all(p.with_suffix(".expected.json").exists() for p in CASES)
