"""`hotline up --gateways N` starts a gateway that exited (a drain, a crash) again, but not one that keeps exiting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from voice_gateway.config import Settings
from voice_gateway.stack import ManagedProcess, Stack


def _exiting(name: str, tmp_path: Path) -> ManagedProcess:
    proc = ManagedProcess(
        name=name,
        args=[sys.executable, "-c", "pass"],
        ready=lambda: True,
        log_path=tmp_path / f"{name}.log",
        env=dict(os.environ, HOTLINE_GATEWAY_PORT="18082"),
    )
    proc.start()
    proc.proc.wait(10)  # type: ignore[union-attr]
    return proc


def test_a_gateway_of_several_is_started_again_once_and_the_runtime_file_follows(tmp_path: Path) -> None:
    stack = Stack(Settings.from_env({"HOTLINE_VAR": str(tmp_path)}), gateway_port=18080, gateways=2)
    gateway = _exiting("gateway-2", tmp_path)
    stack.processes.append(gateway)
    first_pid = gateway.proc.pid  # type: ignore[union-attr]
    said: list[str] = []
    assert stack.revive(gateway, said.append)
    assert gateway.proc.pid != first_pid and said == ["gateway-2 exited with 0; starting it again"]  # type: ignore[union-attr]
    assert f'"gateway-2": {gateway.proc.pid}' in stack.runtime_file.read_text()  # type: ignore[union-attr]
    gateway.proc.wait(10)  # type: ignore[union-attr]
    assert not stack.revive(gateway, said.append), "exited again at once: the hotline stops instead of looping"


def test_a_lone_gateway_or_another_process_is_not_started_again(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOTLINE_VAR": str(tmp_path)})
    alone = Stack(settings, gateway_port=18080)
    assert not alone.revive(_exiting("gateway", tmp_path), print)
    several = Stack(settings, gateway_port=18080, gateways=2)
    assert not several.revive(_exiting("rasa", tmp_path), print)
