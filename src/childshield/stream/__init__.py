"""Live streams: watching them for known material (see ``watch``, ``manager``)."""
