"""The one exception the plug-in's logic raises: a message a GIMP user can act on."""


class PluginError(Exception):
    """Shown to the user as it is: say what went wrong and what to do about it."""
