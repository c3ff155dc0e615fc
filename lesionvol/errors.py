"""Errors lesionvol raises for bad input; the CLI prints them as one line."""


class LesionvolError(Exception):
    """Base class: a problem the user can fix (bad input, refused output)."""


class InputError(LesionvolError):
    """An input file or argument cannot be used as given."""


class OutputExistsError(LesionvolError):
    """The output folder already holds results and overwriting was not asked for."""
