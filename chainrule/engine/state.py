"""Process-wide autograd switches, read on every operation, so kept in one slotted object."""


class _State:
    __slots__ = ("enabled", "anomaly", "counter", "last_inplace")

    def __init__(self):
        self.enabled = True  # grad mode: record operations?
        self.anomaly = False  # detect_anomaly: keep creation sites, check backward for NaN/inf
        # One counter orders nodes (their creation sequence) and stamps in-place changes, so that
        # "modified after this node saved it" is a single comparison.
        self.counter = 0
        self.last_inplace = 0


state = _State()
