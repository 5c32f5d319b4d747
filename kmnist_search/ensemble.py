"""``python -m kmnist_search.ensemble``: see :mod:`kmnist_search.commands.ensemble`."""

from kmnist_search.commands.ensemble import cli

if __name__ == "__main__":
    cli()
