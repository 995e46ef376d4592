"""The ``pricepipe`` command."""
