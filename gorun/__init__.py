"""gorun: a crontab-compatible job scheduler for containers (Debian/Vixie cron semantics)."""

__version__ = "0.1.0"
