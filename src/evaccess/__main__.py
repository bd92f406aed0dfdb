"""``python -m evaccess``: the same as the ``evaccess`` command."""

from evaccess.cli import main

main()
