#!/usr/bin/env python3
"""CDK entry point (cdk.json runs it): reportrelay's stack, configured by the reportrelay:* context."""

import sys
from pathlib import Path

# The stack validates the deployed configuration with the functions' own code (functions/reportrelay).
sys.path.insert(0, str(Path(__file__).resolve().parent / "functions"))

from infra.app import build_app

build_app().synth()
