"""The one error type for refused input."""


class InputError(ValueError):
    """Input that mmlab refuses: an unreadable image, empty text, a foreign checkpoint, ...

    The message is one line a person can act on. The CLI prints it as ``error: <message>``
    and exits with status 2; the app shows it and keeps serving.
    """
