"""``make chaos``: orders across every built flow under faults, then reconciled against the sandboxes.

``plan`` turns a seed into what is sent and which faults are on; ``run`` drives the local stack (waves of
signed webhooks through the front door, vendor faults, drain, faults off, one redrive of every DLQ);
``reconcile`` classifies every accepted event by what the sandboxes and DLQs hold. Development only.
"""
