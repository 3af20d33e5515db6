"""The files that keep the client running at boot: the systemd unit and the Windows scheduled task."""

from __future__ import annotations

import configparser
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from hbdns_client import cli

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "hbdns-client.service"
TASK = Path(__file__).resolve().parents[1] / "windows" / "hbdns-client-task.xml"
NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


def test_systemd_unit_restarts_always_keeps_state_and_installs_the_client_alone() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["RestartPreventExitStatus"].split() == [str(cli.EXIT_CONFIG)]  # only a bad configuration
    assert service["StateDirectory"] == "hbdns-client"  # $STATE_DIRECTORY: where the counter is kept
    assert int(service["TimeoutStopSec"]) > cli.OFFLINE_BUDGET + 1  # the offline beat fits in the stop
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/hbdns-client") and argv[1] == "run"
    cli._parser().parse_args(argv[1:])  # the options exist
    text = UNIT.read_text()
    assert "pip install hbdns\n" not in text and "pip install ./client" in text  # not the server's deps


def test_windows_task_starts_at_boot_restarts_and_never_times_out() -> None:
    root = ET.parse(TASK).getroot()

    def text(path: str) -> str:
        node = root.find(path, NS)
        assert node is not None, path
        return (node.text or "").strip()

    assert root.find("t:Triggers/t:BootTrigger", NS) is not None
    assert text("t:Triggers/t:BootTrigger/t:Repetition/t:Interval") == "PT5M"  # started again if it stopped
    assert text("t:Settings/t:MultipleInstancesPolicy") == "IgnoreNew"  # ...but never twice
    assert text("t:Settings/t:ExecutionTimeLimit") == "PT0S"  # the default would stop it after 3 days
    assert text("t:Settings/t:DisallowStartIfOnBatteries") == text("t:Settings/t:StopIfGoingOnBatteries") == "false"
    assert text("t:Settings/t:RestartOnFailure/t:Count") == "999"
    assert text("t:Settings/t:RunOnlyIfNetworkAvailable") == "false"  # it waits for the network itself
    assert text("t:Principals/t:Principal/t:UserId") == "S-1-5-20"  # NETWORK SERVICE
    command = text("t:Actions/t:Exec/t:Command")
    assert command.endswith("python.exe")  # a console process: it gets the console control events
    args = shlex.split(text("t:Actions/t:Exec/t:Arguments").replace("\\", "/"))
    assert args[:3] == ["-m", "hbdns_client", "run"]
    parsed = cli._parser().parse_args(args[2:])
    assert parsed.config.endswith("client.conf") and parsed.log_file.endswith("client.log")
