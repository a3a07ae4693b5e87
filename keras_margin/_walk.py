"""The layers nested in a Keras model or layer, found through public attributes only."""

import keras


def nested_layers(layer):
    """Every layer inside `layer` (not `layer` itself), each once, parents before their children.

    A model's layers are its `layers` (functional, Sequential and subclassed
    models alike), searched recursively; the layers of any other layer are
    those it holds in public attributes, directly or in lists, tuples and
    dicts (as `self.blocks = [...]` in a custom block).

    Args:
        layer: a `keras.Layer` or `keras.Model`.

    Returns:
        A list of layers.
    """
    found, seen = [], {id(layer)}
    pending = list(_children(layer))
    while pending:
        child = pending.pop(0)
        if id(child) in seen:
            continue
        seen.add(id(child))
        found.append(child)
        pending[:0] = _children(child)
    return found


def _children(layer):
    """The layers directly inside `layer`."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    children = []
    for name, value in vars(layer).items():
        if not name.startswith("_"):
            children.extend(_layers_in(value))
    return children


def _layers_in(value):
    if isinstance(value, keras.Layer):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [layer for item in value for layer in _layers_in(item)]
    return []
