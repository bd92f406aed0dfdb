"""Cluster mode (``EVACCESS_REDIS_URL``): what several server nodes share. Only the
composition root (``server.bootstrap``) imports it; the services see the ports."""
