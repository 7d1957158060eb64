"""Salesforce: the REST client (client.py), Change Data Capture events arriving through Event Relay and
EventBridge (source.py), and the Clarity ⇄ Salesforce mappings and targets."""
