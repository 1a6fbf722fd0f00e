"""Calibrated laws shipped with memlaw, one JSON file per model (see ``memlaw.law.library``)."""
