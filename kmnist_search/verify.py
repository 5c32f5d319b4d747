"""``python -m kmnist_search.verify``: see :mod:`kmnist_search.commands.verify`."""

from kmnist_search.commands.verify import cli

if __name__ == "__main__":
    cli()
