"""Generated from protos/micboard/v1 by `python -m micboardd.api.codegen`; do not edit."""
