"""The command-line front ends: argument parsing, printing and exit codes over the library.

Each is run as ``python -m kmnist_search.NAME`` (the modules ``kmnist_search/NAME.py`` hand over to
``kmnist_search.commands.NAME``).
"""
