"""Profile-log statistics: lines -> (unwrap) -> parse -> per-interval aggregates with a
mergeable quantile sketch. Wiring lives in opsagent/pipelines/profile.py."""
