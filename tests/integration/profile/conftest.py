"""Real services for the profile-statistics integration tests: statsd_exporter, Prometheus
scraping it, and carbon-cache (tests/fixtures/*.py; provisioned by scripts/provision)."""

from tests.fixtures.carbon import carbon
from tests.fixtures.prometheus import prometheus
from tests.fixtures.statsd_exporter import statsd_exporter

__all__ = ["carbon", "prometheus", "statsd_exporter"]
