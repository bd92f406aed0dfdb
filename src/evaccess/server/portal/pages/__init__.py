"""The portal's pages, one module per area; each has a ``router`` of ``PortalRoute``s."""
