"""Scale-out on one machine: `BUTTERFLY_REPLICAS` read and refused, the processes `make run`
runs for it, and the HAProxy configuration in front of several gateways."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.balancer import Balancer, ensure_haproxy, haproxy_config
from infra.dev import dev_roles, metrics_ports
from infra.replicas import MAX_REPLICAS, SCALABLE, SINGLE, parse_replicas
from infra.services import ServiceUnavailable
from infra.settings import Settings

PYTHON = "python"
ENV = {"BUTTERFLY_DB_PREFIX": "bfy"}


def balancer(*ports: int) -> Balancer:
    return Balancer(Path("/usr/sbin/haproxy"), Path("/run/haproxy.cfg"), "127.0.0.1", 8000, ports)


def names(**kwargs: object) -> list[str]:
    return [role.name for role in dev_roles(ENV, PYTHON, **kwargs)]  # type: ignore[arg-type]


# the setting ---------------------------------------------------------------------------------


def test_replicas_are_read_as_role_and_count() -> None:
    assert parse_replicas("gateway:2,decider.registration:2,projector.website:2") == {
        "gateway": 2,
        "decider.registration": 2,
        "projector.website": 2,
    }
    assert parse_replicas(" gateway : 3 , bridge:1, ") == {"gateway": 3, "bridge": 1}
    assert parse_replicas("") == {}
    assert parse_replicas(f"projector.orders:{MAX_REPLICAS}") == {"projector.orders": 16}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("gatway:2", "unknown role 'gatway'"),
        ("gateway:0", "gateway:0: a count is from 1 to 16"),
        ("gateway:17", "gateway:17: a count is from 1 to 16"),
        ("gateway:-1", "a count is from 1 to 16"),
        ("gateway:two", "the count must be a whole number"),
        ("gateway", "is not role:count"),
        ("gateway:2,gateway:3", "gateway is named twice"),
        ("clock:2", "clock runs once: the order clock"),
        ("relay:2", "relay runs once"),
        ("partner-sim:2", "partner-sim runs once"),
    ],
)
def test_a_wrong_count_or_role_is_refused_saying_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_replicas(value)


def test_the_setting_is_refused_at_start_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match=re.escape("BUTTERFLY_REPLICAS: unknown role")):
        Settings(_env_file=None, replicas="decider.registraton:2")
    assert Settings(_env_file=None, replicas="gateway:2").replica_counts == {"gateway": 2}
    assert Settings(_env_file=None).replica_counts == {}


def test_mailers_scale_out_since_each_claims_its_rows() -> None:
    assert parse_replicas("mailer:3") == {"mailer": 3}
    assert names(replicas={"mailer": 2}).count("mailer#2") == 1


def test_every_role_make_run_runs_is_either_scalable_or_single_for_a_reason() -> None:
    every = names(partner_port=8100, payment_port=8200)
    assert set(every) == set(SCALABLE) | set(SINGLE)
    assert not set(SCALABLE) & set(SINGLE)


# the processes -------------------------------------------------------------------------------


def test_without_replicas_every_role_runs_once_as_before() -> None:
    roles = dev_roles(ENV, PYTHON, partner_port=8100, payment_port=8200)
    assert [role.name for role in roles] == [
        "gateway",
        "decider.registration",
        "projector.website",
        "projector.reporting",
        "relay",
        "decider.lodging",
        "projector.lodging",
        "bridge",
        "decider.accounts",
        "projector.accounts",
        "projector.orders",
        "mailer",
        "clock",
        "partner-sim",
        "payment-sim",
    ]
    assert roles[0].argv == [PYTHON, "-m", "infra.cli", "gateway"]
    assert all(role.env == ENV for role in roles)
    assert names(replicas={"gateway": 1, "decider.registration": 1}) == names()


def test_replicas_run_as_numbered_processes_of_the_same_command() -> None:
    roles = dev_roles(
        ENV,
        PYTHON,
        replicas={"decider.registration": 2, "projector.website": 3},
    )
    by_name = {role.name: role for role in roles}
    assert [n for n in by_name if n.startswith("decider.registration")] == [
        "decider.registration#1",
        "decider.registration#2",
    ]
    assert [n for n in by_name if n.startswith("projector.website")] == [
        "projector.website#1",
        "projector.website#2",
        "projector.website#3",
    ]
    assert by_name["decider.registration#2"].argv == [
        PYTHON,
        "-m",
        "infra.cli",
        "decider",
        "registration",
    ]
    assert {"gateway", "clock", "relay", "mailer"} <= set(by_name)
    assert "haproxy" not in by_name


def test_gateways_behind_haproxy_listen_on_their_own_ports_and_trust_only_it() -> None:
    roles = dev_roles(ENV, PYTHON, replicas={"gateway": 2}, balancer=balancer(41001, 41002))
    by_name = {role.name: role for role in roles}
    assert by_name["gateway#1"].argv[-4:] == ["--host", "127.0.0.1", "--port", "41001"]
    assert by_name["gateway#2"].argv[-4:] == ["--host", "127.0.0.1", "--port", "41002"]
    assert by_name["gateway#1"].env == {**ENV, "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    assert by_name["haproxy"].argv == ["/usr/sbin/haproxy", "-db", "-f", "/run/haproxy.cfg"]
    assert by_name["decider.registration"].env == ENV
    assert "gateway" not in by_name


def test_several_gateways_need_a_balancer_with_a_port_for_each() -> None:
    with pytest.raises(ValueError, match="2 gateway"):
        dev_roles(ENV, PYTHON, replicas={"gateway": 2})
    with pytest.raises(ValueError, match="3 gateway"):
        dev_roles(ENV, PYTHON, replicas={"gateway": 3}, balancer=balancer(1, 2))
    with pytest.raises(ValueError, match="1 gateway"):
        dev_roles(ENV, PYTHON, balancer=balancer(1, 2))
    with pytest.raises(ValueError, match="clock runs once"):
        dev_roles(ENV, PYTHON, replicas={"clock": 2})


def test_each_role_gets_a_metrics_port_of_its_own_from_the_base() -> None:
    roles = dev_roles(
        ENV,
        PYTHON,
        partner_port=8100,
        payment_port=8200,
        replicas={"gateway": 2, "decider.registration": 2},
        balancer=balancer(41001, 41002),
        metrics_base_port=9100,
    )
    ports = metrics_ports(roles)
    assert list(ports.values()) == list(range(9100, 9100 + len(ports)))
    assert ports["decider.registration#1"] == 9100
    assert ports["decider.registration#2"] == 9101
    assert "clock" in ports
    by_name = {role.name: role for role in roles}
    for serves_on_http in ("gateway#1", "gateway#2", "partner-sim", "payment-sim"):
        assert by_name[serves_on_http].env is not None
        assert by_name[serves_on_http].env["BUTTERFLY_METRICS_PORT"] == "0"
    assert by_name["haproxy"].env is None
    assert metrics_ports(dev_roles(ENV, PYTHON)) == {}


# the HAProxy configuration -------------------------------------------------------------------


def config(**overrides: object) -> str:
    values: dict[str, object] = {
        "host": "0.0.0.0",
        "port": 8000,
        "gateway_ports": [41001, 41002, 41003],
        "decision_wait_seconds": 5.0,
    }
    return haproxy_config(**(values | overrides))  # type: ignore[arg-type]


def section(text: str, header: str) -> str:
    """The lines of one section, up to the next blank line."""
    return text.split(f"\n{header}\n", 1)[1].split("\n\n", 1)[0]


def test_haproxy_listens_on_the_public_address_and_checks_each_gateways_health() -> None:
    text = config()
    assert "    bind 0.0.0.0:8000" in section(text, "frontend public")
    gateways = section(text, "backend gateways")
    assert "option httpchk GET /health" in gateways
    assert "http-check expect status 200" in gateways
    assert re.findall(r"server (\S+) (\S+) check", gateways) == [
        ("gateway1", "127.0.0.1:41001"),
        ("gateway2", "127.0.0.1:41002"),
        ("gateway3", "127.0.0.1:41003"),
    ]
    assert "default-server inter 500ms fall 1 rise 2" in section(text, "defaults")


def test_haproxy_retries_only_what_is_safe_to_replay_on_another_gateway() -> None:
    text = config()
    defaults = section(text, "defaults")
    assert "retries 2" in defaults
    assert "option redispatch" in defaults
    assert "retry-on conn-failure empty-response" in defaults
    assert "option http-buffer-request" in defaults, "a request is replayed only when whole"
    frontend = section(text, "frontend public")
    assert "acl replayable method GET HEAD OPTIONS" in frontend
    assert "acl replayable req.hdr(Idempotency-Key) -m found" in frontend
    assert "http-request disable-l7-retry unless replayable" in frontend


def test_haproxy_gives_the_gateways_the_clients_address_not_the_clients_claim() -> None:
    frontend = section(config(), "frontend public")
    assert frontend.index("http-request del-header X-Forwarded-For") < frontend.index(
        "option forwardfor"
    )


def test_haproxy_waits_longer_than_a_decision_wait() -> None:
    def seconds(text: str, name: str) -> int:
        found = re.search(rf"timeout {name} (\d+)s", text)
        assert found is not None, name
        return int(found.group(1))

    for wait in (5.0, 10.0, 2.5):
        text = config(decision_wait_seconds=wait)
        assert seconds(text, "server") >= wait + 20
        assert seconds(text, "http-keep-alive") > wait
        assert seconds(text, "client") >= 30


def test_when_every_gateway_fails_its_health_check_haproxy_still_sends_to_live_ones() -> None:
    text = config()
    assert "use_backend gateways_alive if { nbsrv(gateways) eq 0 }" in text
    alive = section(text, "backend gateways_alive")
    assert "httpchk" not in alive
    assert alive.count(" check") == 3


def test_haproxy_serves_no_more_connections_than_it_can_open() -> None:
    assert "    maxconn 4096" in section(config(), "global")
    assert "    maxconn 300" in section(config(maxconn=300), "global")
    with pytest.raises(ValueError, match="at least one gateway"):
        config(gateway_ports=[])


async def test_without_haproxy_or_a_way_to_install_it_dev_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("infra.balancer.haproxy_binary", lambda: None)
    monkeypatch.setattr("infra.packages.shutil.which", lambda name: None)
    with pytest.raises(ServiceUnavailable, match="install haproxy, or run one gateway"):
        await ensure_haproxy()
