"""Test helper: a crafted pickle payload, to show that resume never unpickles what it reads."""


class Payload:
    """Unpickling it creates the file ``marker``, i.e. runs code (as a malicious file in a resume folder would)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
