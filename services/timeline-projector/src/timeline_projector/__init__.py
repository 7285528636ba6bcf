"""Timeline projector: read models (timeline, run history, stats) projected from the event log."""

SCHEMA = "timeline"
