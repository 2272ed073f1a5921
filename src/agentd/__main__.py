"""``python -m agentd`` and the ``agentd`` console script.

``agentd --version`` answers here, before click or any other module is imported (scripts call it to probe for agentd);
the hot queue commands take the click-free path of :mod:`agentd.cli.fast`, which hands everything else to click.
"""

import gc
import sys


def main() -> None:
    """Entry point: the version at once, else the fast path or the click CLI (:func:`agentd.cli.fast.main`).

    No garbage collection while the command's modules load: nearly all they allocate lives as long as the process, and
    each collection walked it again (a daemon's start-up: about 25 collections, 3-5 ms of its 50). A daemon turns it
    back on before its first pass, with what it loaded frozen out of the collections' way
    (:func:`agentd.cli.foreground.run`); a command handed to click, before click loads; the hot queue commands end
    first."""
    gc.disable()
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
