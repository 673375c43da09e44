"""Solutions of exercises/tutorial_01.py."""


def broadcast_shape(a, b):
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)  # align at the end
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            raise ValueError(f"shapes {a} and {b} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(out)


def _broadcast_from_the_left(a, b):
    """Aligns the shapes at their first axis."""
    n = max(len(a), len(b))
    a, b = tuple(a) + (1,) * (n - len(a)), tuple(b) + (1,) * (n - len(b))
    return broadcast_shape(a, b)


def strides(shape, itemsize):
    out, step = [], itemsize
    for n in reversed(shape):
        out.append(step)
        step *= n
    return tuple(reversed(out))


WRONG = {
    "broadcast_shape": [_broadcast_from_the_left],
    "strides": [lambda shape, itemsize: tuple(reversed(strides(shape, itemsize)))],  # Fortran-ish
}
