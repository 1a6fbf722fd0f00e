"""The one exception type that means "the user asked for something impossible"."""

import re

#: An argument named bare in a library message (``pass ratio= or initial_loss=``): a lowercase
#: name and "=" with no value after it.
_ARGUMENT = re.compile(r"\b([a-z][a-z0-9_]*)=(?![\w\[{'\"(.-])")


class MemlawInputError(ValueError):
    """Bad user input: the CLI prints the message as one line and exits with code 2.

    Raise it where input enters (loaders, config parsing, model resolution) with a message
    that says what is wrong and how to fix it; inner code may then trust its inputs. Name an
    argument as Python spells it with a bare "=" (``initial_loss=``): ``as_flags`` turns it into
    the command line's flag (``--initial-loss``), so each reader sees their own spelling.
    """


def as_flags(message: str) -> str:
    """``message`` with every bare argument (``max_steps=``) written as its flag (``--max-steps``)."""
    return _ARGUMENT.sub(lambda match: "--" + match.group(1).replace("_", "-"), message)
