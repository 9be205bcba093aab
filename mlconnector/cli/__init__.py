"""The thin command-line layer: parse, call mlconnector.api, render."""
