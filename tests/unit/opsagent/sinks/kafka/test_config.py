"""KafkaSinkConfig validation (through the config loader, with key paths) and the producer
settings derived from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from opsagent.config.loader import from_dict
from opsagent.errors import ConfigErrors, FatalError
from opsagent.sinks.kafka.config import KafkaSinkConfig
from opsagent.sinks.kafka.kafka_python import producer_configs
from opsagent.sinks.kafka.producer import read_password


@dataclasses.dataclass(frozen=True)
class Root:
    kafka: KafkaSinkConfig


BASE = {"bootstrap_servers": ["127.0.0.1:9092"], "topic": "logs"}


def load(**kw: Any) -> KafkaSinkConfig:
    return from_dict(Root, {"kafka": {**BASE, **kw}}).kafka


def errors(**kw: Any) -> str:
    with pytest.raises(ConfigErrors) as exc:
        load(**kw)
    return str(exc.value)


def test_defaults() -> None:
    cfg = load()
    assert cfg.compression == "zstd" and cfg.security_protocol == "PLAINTEXT"
    assert cfg.bootstrap_servers == ("127.0.0.1:9092",)


@pytest.mark.parametrize(("kw", "message"), [
    ({"acks": 1}, "kafka.acks: unknown key"),
    ({"compression": "snappy"}, "kafka.compression: must be one of"),
    ({"bootstrap_servers": ["nohost"]}, "bootstrap_servers[0]: expected host:port"),
    ({"bootstrap_servers": []}, "at least one host:port"),
    ({"topic": "a b"}, "kafka: topic: 1-249 characters"),
    ({"max_inflight_bytes": 0}, "max_inflight_bytes: must be > 0"),
    ({"delivery_timeout_ms": 1000}, "delivery_timeout_ms: must be >= request_timeout_ms"),
    ({"security_protocol": "SASL_PLAINTEXT"}, "sasl_username: required"),
    ({"security_protocol": "SASL_SSL", "sasl_username": "u"}, "sasl_password: one of"),
    ({"sasl_username": "u", "sasl_password": "p"}, "SASL settings need security_protocol"),
    ({"ssl_cafile": "/ca.pem"}, "TLS settings need security_protocol"),
    ({"security_protocol": "SSL", "ssl_certfile": "/c.pem"}, "ssl_certfile and ssl_keyfile"),
    ({"retry_backoff_max_secs": 0.1}, "retry_backoff_max_secs: must be >="),
    ({"linger_ms": "5"}, "kafka.linger_ms: expected an integer"),
    ({"reconnect_backoff_ms": 0}, "reconnect_backoff_ms: must be > 0"),
    ({"client": "rdkafka"}, "kafka.client: must be one of"),
    ({"client": "librdkafka", "linger_ms": 1_000_000, "delivery_timeout_ms": 2_000_000},
     "linger_ms: at most 900000 with client librdkafka"),
    ({"client": "librdkafka", "max_request_size": 999},
     "max_request_size: 1000..1000000000 with client librdkafka"),
    ({"reconnect_backoff_max_ms": 10}, "reconnect_backoff_max_ms: must be >= reconnect_backoff_ms"),
], ids=lambda v: str(v)[:40])
def test_invalid_settings_name_their_key(kw: dict[str, Any], message: str) -> None:
    assert message in errors(**kw)


def test_producer_settings_always_acks_all_and_idempotent() -> None:
    out = producer_configs(load(compression="none", linger_ms=7), "")
    assert out["acks"] == "all" and out["enable_idempotence"] is True
    assert out["max_in_flight_requests_per_connection"] <= 5
    assert out["compression_type"] is None and out["linger_ms"] == 7
    assert "sasl_mechanism" not in out and "ssl_cafile" not in out
    assert producer_configs(load(), "")["compression_type"] == "zstd"


def test_reconnect_backoff_is_set_so_delivery_resumes_about_a_second_after_an_outage() -> None:
    # kafka-python's own default reconnect_backoff_max_ms is 30000: delivery then resumed up
    # to 30 s after the broker came back (issue 10, defect 6).
    out = producer_configs(load(), "")
    assert (out["reconnect_backoff_ms"], out["reconnect_backoff_max_ms"]) == (50, 1000)
    out = producer_configs(load(reconnect_backoff_ms=20, reconnect_backoff_max_ms=500), "")
    assert (out["reconnect_backoff_ms"], out["reconnect_backoff_max_ms"]) == (20, 500)


def test_producer_settings_for_sasl_ssl(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    cfg = load(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
               sasl_username="agent", sasl_password_file=str(pw), ssl_cafile="/ca.pem")
    out = producer_configs(cfg, read_password(cfg))
    assert out["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (out["sasl_plain_username"], out["sasl_plain_password"]) == ("agent", "s3cret")
    assert out["ssl_cafile"] == "/ca.pem" and out["ssl_certfile"] is None
    assert out["ssl_check_hostname"] is True


def test_unreadable_password_file_is_fatal(tmp_path: Path) -> None:
    cfg = load(security_protocol="SASL_PLAINTEXT", sasl_username="u",
               sasl_password_file=str(tmp_path / "missing"))
    with pytest.raises(FatalError, match="sasl_password_file"):
        read_password(cfg)
