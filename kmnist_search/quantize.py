"""``python -m kmnist_search.quantize``: see :mod:`kmnist_search.commands.quantize`."""

from kmnist_search.commands.quantize import cli

if __name__ == "__main__":
    cli()
