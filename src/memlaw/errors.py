"""The one exception type that means "the user asked for something impossible"."""


class MemlawInputError(ValueError):
    """Bad user input: the CLI prints the message as one line and exits with code 2.

    Raise it where input enters (loaders, config parsing, model resolution) with a message
    that says what is wrong and how to fix it; inner code may then trust its inputs.
    """
