"""docs/kubernetes.md against the server it deploys (issue 18).

Every YAML block parses. The Deployment's ``muxwsgi serve`` arguments are the server's own
settings (its parser reads them); the container ports are the ``--bind`` and ``--stats``
ports; the probes ask the stats endpoints; the grace period covers the preStop sleep, the
drain and the master's kill margin, as the text's arithmetic says; the Services and the
NetworkPolicy select the pods and name their ports; the sizing follows the text's rules. And
those exact arguments, with the addresses moved to 127.0.0.1 and the test application, start
a server that answers the probes, and refuses the connection of an address outside
``--allow-from``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from muxwsgi.server.config import SETTINGS, SETTINGS_BY_NAME, Config
from muxwsgi.server.config_load import load_config
from muxwsgi.server.sockets import parse_bind
from muxwsgi.server.supervision import KILL_MARGIN

from .servers import ROOT, connect, start, until

DOC = ROOT / "docs" / "kubernetes.md"
TEXT = DOC.read_text(encoding="utf-8")
YAML = re.findall(r"^```yaml[ \t]*\n(.*?)^```[ \t]*$", TEXT, re.M | re.S)
Manifest = dict[str, Any]


def manifests(kind: str) -> list[Manifest]:
    return [
        doc
        for block in YAML
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and doc.get("kind") == kind
    ]


def the(kind: str) -> Manifest:
    (found,) = manifests(kind)
    return found


DEPLOYMENT = the("Deployment")
POD = DEPLOYMENT["spec"]["template"]
(CONTAINER,) = POD["spec"]["containers"]
PORTS: dict[str, int] = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}


def serve_args() -> list[str]:
    """The arguments after ``muxwsgi serve`` in the container's command."""
    words = [str(word) for word in [*CONTAINER.get("command", []), *CONTAINER.get("args", [])]]
    assert words[:2] == ["muxwsgi", "serve"], words
    return words[2:]


CONFIG: Config = load_config(serve_args(), environ={})


def port_number(port: int | str) -> int:
    """A port as a manifest names it (a number, or the name of a container port)."""
    return port if isinstance(port, int) else PORTS[port]


def served_ports() -> tuple[set[int], int]:
    """The --bind ports and the --stats port, each bound to all interfaces."""
    assert CONFIG.stats is not None, "the probes need --stats"
    binds = [parse_bind(spec) for spec in CONFIG.bind]
    stats = parse_bind(CONFIG.stats)
    for address in [*binds, stats]:
        # Loopback is the pod's own: no Service and no kubelet can reach it.
        assert address.family == "tcp" and address.host in ("0.0.0.0", "::"), address
    return {address.port for address in binds}, stats.port


def test_every_yaml_block_parses() -> None:
    assert len(YAML) >= 5
    for block in YAML:
        assert list(yaml.safe_load_all(block)), block


def test_the_serve_arguments_are_settings() -> None:
    flags = {flag for item in SETTINGS for flag in item.cli}
    named = [word.partition("=")[0] for word in serve_args() if word.startswith("-")]
    assert named and set(named) <= flags, set(named) - flags
    # What the text relies on, parsed by the server's own parser (load_config above).
    assert CONFIG.app == "myapp.wsgi:application"
    assert CONFIG.allow_from != SETTINGS_BY_NAME["allow_from"].default


def test_container_ports_are_the_bind_and_stats_ports() -> None:
    binds, stats = served_ports()
    assert set(PORTS.values()) == binds | {stats}
    assert PORTS["stats"] == stats


def test_probes_ask_the_stats_endpoints() -> None:
    _, stats = served_ports()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http_get = CONTAINER[probe]["httpGet"]
        assert http_get["path"] == path
        assert port_number(http_get["port"]) == stats
        # The master gives a slow stats client up to a second before the next one.
        assert CONTAINER[probe].get("timeoutSeconds", 1) > 1


def prestop_sleep(handler: Manifest) -> int:
    """The seconds a preStop handler sleeps: ``exec: [sleep, N]`` or ``sleep: {seconds: N}``."""
    if "sleep" in handler:
        seconds: int = handler["sleep"]["seconds"]
        return seconds
    command = handler["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


def test_the_grace_period_covers_prestop_the_drain_and_the_kill_margin() -> None:
    grace = POD["spec"]["terminationGracePeriodSeconds"]
    sleep = prestop_sleep(CONTAINER["lifecycle"]["preStop"])
    assert grace > sleep + CONFIG.graceful_timeout + KILL_MARGIN
    # The text's arithmetic is the manifest's.
    found = re.search(r"^ +(\d+) > (\d+) \+ (\d+) \+ (\d+)$", TEXT, re.M)
    assert found, "the arithmetic is not in the text"
    assert tuple(map(int, found.groups())) == (grace, sleep, CONFIG.graceful_timeout, KILL_MARGIN)
    # The kubelet's own sleep, shown as the alternative, sleeps as long.
    (alternative,) = [
        doc for block in YAML for doc in yaml.safe_load_all(block) if "kind" not in doc
    ]
    assert prestop_sleep(alternative["lifecycle"]["preStop"]) == sleep


def test_services_select_the_pods_and_reach_the_mux_port() -> None:
    binds, _ = served_ports()
    labels = POD["metadata"]["labels"]
    namespace = DEPLOYMENT["metadata"]["namespace"]
    headless = []
    for service in manifests("Service"):
        assert service["metadata"]["namespace"] == namespace
        spec = service["spec"]
        assert spec["selector"].items() <= labels.items(), service["metadata"]["name"]
        for port in spec["ports"]:
            assert port_number(port["targetPort"]) in binds
            if spec.get("clusterIP") == "None":
                # Clients dial the pods' own addresses: the Service's port must be theirs.
                assert port["port"] == port_number(port["targetPort"])
                headless.append((service["metadata"]["name"], port["port"]))
    assert len(manifests("Service")) == 2 and len(headless) == 1
    name, port = headless[0]
    assert f"mux://{name}.{namespace}.svc:{port}" in TEXT


def test_the_network_policy_admits_the_pods_ports() -> None:
    policy = the("NetworkPolicy")
    assert policy["metadata"]["namespace"] == DEPLOYMENT["metadata"]["namespace"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= POD["metadata"]["labels"].items()
    binds, stats = served_ports()
    admitted = {port_number(p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert admitted == binds | {stats}


def cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_sizing_follows_the_text() -> None:
    resources = CONTAINER["resources"]
    assert cores(resources["requests"]["cpu"]) == CONFIG.workers  # --workers = CPU request
    cpu_limit = resources.get("limits", {}).get("cpu")
    assert cpu_limit is None or cores(cpu_limit) >= CONFIG.workers
    # --reload-on-rss replaces a worker before the container reaches its memory limit.
    assert 0 < CONFIG.reload_on_rss * CONFIG.workers < mebibytes(resources["limits"]["memory"])
    assert f"{CONFIG.workers} x {CONFIG.reload_on_rss} MiB" in TEXT


def on_loopback(args: list[str]) -> list[str]:
    """``args`` with every --bind and --stats address moved to 127.0.0.1 (any port)."""
    flags = {*SETTINGS_BY_NAME["bind"].cli, *SETTINGS_BY_NAME["stats"].cli}
    moved: list[str] = []
    for word in args:
        flag, equals, _ = word.partition("=")
        if equals and flag in flags:
            word = f"{flag}=127.0.0.1:0"
        elif moved and moved[-1] in flags:
            word = "127.0.0.1:0"
        moved.append(word)
    return moved


@pytest.mark.slow
def test_the_deployments_arguments_start_a_ready_server(tmp_path: Path) -> None:
    args = on_loopback(serve_args())
    assert args.count(CONFIG.app or "") == 1
    args.remove(CONFIG.app or "")
    server = start("tests.server.apps:app", *args, bind=None, log_dir=tmp_path, ready=False)
    try:
        stats = server.stats_address

        def probe(path: str) -> int:
            with connect(stats, timeout=5) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: pod\r\nUser-Agent: kube-probe\r\n\r\n"
                             .encode())  # fmt: skip
                reply = b"".join(iter(lambda: sock.recv(65536), b""))
            return int(reply.split(b" ", 2)[1])

        readiness = CONTAINER["readinessProbe"]["httpGet"]["path"]
        until(lambda: probe(readiness) == 200, 30, what="/readyz to say 200", ignore=(OSError,))
        assert probe(CONTAINER["livenessProbe"]["httpGet"]["path"]) == 200
        # --allow-from 10.0.0.0/8: a connection from 127.0.0.1 is closed before it is read.
        with connect(server.address, timeout=5) as sock:
            try:
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: pod\r\n\r\n")
                assert sock.recv(65536) == b""
            except ConnectionResetError:
                pass
        assert len(server.worker_pids()) == CONFIG.workers
    finally:
        server.stop()
