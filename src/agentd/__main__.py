"""``python -m agentd`` and the ``agentd`` console script.

``agentd --version`` answers here, before click or any other module is imported (scripts call it to probe for agentd);
the hot queue commands take the click-free path of :mod:`agentd.cli.fast`, which hands everything else to click.
"""

import sys


def main() -> None:
    """Entry point: the version at once, else the fast path or the click CLI (:func:`agentd.cli.fast.main`)."""
    if sys.argv[1:] == ["--version"]:
        from agentd import __version__

        sys.stdout.write(f"agentd, version {__version__}\n")
        sys.stdout.flush()
        sys.exit(0)
    try:
        from agentd.cli import fast

        fast.main(sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C while the command's modules load (its own boundary says it once they have)
        sys.stderr.write("agentd: interrupted\n")
        sys.stderr.flush()
        sys.exit(130)


if __name__ == "__main__":
    main()
