"""Alert notifications: the channels that carry a firing or resolved alert to people and systems."""
