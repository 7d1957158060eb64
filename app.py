#!/usr/bin/env python3
"""CDK entry point (``npx cdk synth`` / ``deploy``): one stack per stage in ``cdk.json``, cdk-nag checked."""

from infra.application import build_app

build_app().synth()
