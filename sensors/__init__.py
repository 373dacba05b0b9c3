"""Sensors, one module per stage of the flow."""
