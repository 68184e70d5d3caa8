"""MQTT bridge with Home Assistant discovery."""
