"""``python -m kmnist_search.summary``: see :mod:`kmnist_search.commands.summary`."""

from kmnist_search.commands.summary import cli

if __name__ == "__main__":
    cli()
