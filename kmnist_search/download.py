"""``python -m kmnist_search.download``: see :mod:`kmnist_search.commands.download`."""

from kmnist_search.commands.download import cli

if __name__ == "__main__":
    cli()
