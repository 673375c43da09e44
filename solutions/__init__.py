"""Reference solutions of the exercises: `solutions/NAME.py` fills in every stub of
`exercises/NAME.py`, and its `WRONG` maps a stub's name to common slips — wrong versions the
checker must reject. Read a solution after your own version passes, or when stuck."""
