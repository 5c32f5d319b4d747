"""``python -m kmnist_search.predict``: see :mod:`kmnist_search.commands.predict`."""

from kmnist_search.commands.predict import cli

if __name__ == "__main__":
    cli()
