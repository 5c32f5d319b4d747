"""``python -m kmnist_search.run``: see :mod:`kmnist_search.commands.run`."""

from kmnist_search.commands.run import cli

if __name__ == "__main__":
    cli()
