"""Protocol-faithful device simulators, written from the reference, never from our codecs."""
