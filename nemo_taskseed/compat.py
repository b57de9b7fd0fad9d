"""Every workaround for an upstream defect lives here, with how to know when to drop it."""

from __future__ import annotations
