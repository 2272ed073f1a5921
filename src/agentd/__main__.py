"""``python -m agentd`` and the ``agentd`` console script.

``agentd --version`` answers here, before click or any other module is imported (scripts call it to probe for agentd).
"""

import sys


def main() -> None:
    """Entry point: the version at once, else the click CLI (:func:`agentd.cli.main`)."""
    if sys.argv[1:] == ["--version"]:
        from agentd import __version__

        sys.stdout.write(f"agentd, version {__version__}\n")
        sys.stdout.flush()
        sys.exit(0)
    from agentd.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
