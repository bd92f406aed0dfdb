"""``python -m evaccess``: the same command as the ``evaccess`` entry point."""

from evaccess.cli import main

if __name__ == "__main__":
    main()
