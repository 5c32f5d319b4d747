"""``python -m kmnist_search.export``: see :mod:`kmnist_search.commands.export`."""

from kmnist_search.commands.export import cli

if __name__ == "__main__":
    cli()
