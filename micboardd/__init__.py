"""micboardd: watches every wireless microphone in a venue and tells people and systems what it is doing."""

__version__ = "0.1.0"
