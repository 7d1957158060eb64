"""Switchyard's AWS CDK app: constructs, the stack per stage, and an in-process synthesizer.

Infrastructure as code only: nothing here is bundled into a Lambda asset, and nothing here imports
``functions/``. The catalog (``switchyard.catalog``) and the settings models
(``switchyard.settings``) are the contracts this package builds from.
"""
