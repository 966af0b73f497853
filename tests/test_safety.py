"""Safety: model files cannot run code, library files are plain data, nothing reaches the network.

A library and a model file come from other people (shared by an archive, copied from a colleague),
so opening them must never execute anything; and sheetaudio works offline: no request at run
time, not even a failed one.
"""

from __future__ import annotations

import ast
import json
import pickle
import socket
from pathlib import Path

import pytest
import torch

from sheetaudio_gui.cli import main
from sheetaudio_gui.core.models import (
    ModelDims,
    ModelFileError,
    PassageModel,
    load_model,
    save_model,
)

PACKAGE = Path(__file__).resolve().parents[1] / "sheetaudio_gui"
TINY = ModelDims(cnn_channels=(8, 8, 16, 16), gru_hidden=32)
MARKER = "sheetaudio-was-made-to-run-this"


class RunsCode:
    """A pickle payload that would create a marker file when unpickled by a careless loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def calls_named(tree: ast.AST, dotted: str) -> list[ast.Call]:
    """Calls like `torch.load(...)` (matched on the last two names of the callee)."""
    owner, name = dotted.split(".")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if node.func.attr == name and isinstance(value, ast.Name) and value.id == owner:
                found.append(node)
    return found


# --- model files ---------------------------------------------------------------------------------


def test_a_model_file_carrying_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    path = tmp_path / "evil.pt"
    torch.save({"format": "anything", "payload": RunsCode(marker)}, path)
    with pytest.raises(ModelFileError, match=r"evil\.pt"):
        load_model(path)
    assert not marker.exists()


def test_a_plain_pickle_renamed_to_pt_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(ModelFileError, match=r"model\.pt"):
        load_model(path)
    assert not marker.exists()


def test_a_genuine_model_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "fine.pt"
    save_model(PassageModel(TINY), path)
    assert load_model(path).model.dims == TINY


def test_every_torch_load_in_the_package_is_weights_only() -> None:
    loads = []
    for file in source_files():
        for call in calls_named(ast.parse(file.read_text()), "torch.load"):
            flags = {k.arg: k.value for k in call.keywords}
            ok = isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value  # type: ignore[union-attr]
            loads.append((file.name, call.lineno, ok))
    assert loads, "no torch.load found: the check looks at the wrong code"
    assert all(ok for *_, ok in loads), [f"{f}:{n}" for f, n, ok in loads if not ok]


def test_no_module_unpickles_evaluates_or_executes_stored_data() -> None:
    banned_imports = {"pickle", "cPickle", "dill", "shelve", "marshal", "joblib"}
    offenders = []
    for file in source_files():
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                names.append(getattr(node, "module", None) or "")
                if any(n.split(".")[0] in banned_imports for n in names):
                    offenders.append(f"{file.name}:{node.lineno} imports {names}")
            called = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            if called and node.func.id in ("eval", "exec"):  # type: ignore[attr-defined]
                offenders.append(f"{file.name}:{node.lineno} calls {node.func.id}")
            pickles = isinstance(node, ast.keyword) and node.arg == "allow_pickle"
            if pickles and not (isinstance(node.value, ast.Constant) and node.value.value is False):
                offenders.append(f"{file.name}: allow_pickle")
    assert offenders == []


# --- the network ---------------------------------------------------------------------------------

NETWORK_MODULES = {"urllib", "http", "requests", "httpx", "aiohttp", "socket", "ftplib", "smtplib"}


def test_no_module_of_the_package_imports_a_network_library() -> None:
    offenders = []
    for file in source_files():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] in NETWORK_MODULES for n in names):
                offenders.append(f"{file.relative_to(PACKAGE)}:{node.lineno} {names}")
            if any(n.startswith("PySide6.QtNetwork") for n in names):
                offenders.append(f"{file.relative_to(PACKAGE)}:{node.lineno} {names}")
    assert offenders == []


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way out (connect, name lookup) fails the test by recording the attempt."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise OSError("network access attempted during a test that forbids it")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_indexing_searching_and_aligning_never_touch_the_network(
    tmp_path: Path, engraved_pdf: Path, sine_flac: Path, no_network: list[str], capsys
) -> None:
    model = tmp_path / "model.pt"
    save_model(PassageModel(TINY), model)
    library = ["--library", str(tmp_path / "lib"), "--model", str(model)]
    assert main(["library", "add", *library, str(engraved_pdf), str(sine_flac)]) == 0
    capsys.readouterr()
    assert main(["query", *library, "--audio", str(sine_flac), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["kind"] == "score"
    query = ["--score", str(engraved_pdf), "--page", "0", "--system", "0", "--json"]
    assert main(["query", *library, *query]) == 0
    assert main(["align", *library, "--score", str(engraved_pdf), "--audio", str(sine_flac)]) == 0
    assert main(["library", "check", "--library", str(tmp_path / "lib")]) == 0
    assert no_network == []
