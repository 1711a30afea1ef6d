"""The image is built once per session (podman, local base image) and shared by every test here;
the session Kafka broker comes from tests/fixtures/kafka.py."""

from __future__ import annotations

import pytest

from tests.fixtures.kafka import kafka_broker
from tests.integration.image.containers import Image, build_image

__all__ = ["kafka_broker", "opsagent_image"]


@pytest.fixture(scope="session")
def opsagent_image() -> Image:
    """The repository's Dockerfile built as localhost/opsagent:test (kept in podman's storage
    afterwards: its layers are the build cache of the next run)."""
    image = build_image("localhost/opsagent:test")
    print(f"\nimage {image.tag}: {image.size_bytes / 1e6:.1f} MB, built in "
          f"{image.build_secs:.1f} s")
    return image
