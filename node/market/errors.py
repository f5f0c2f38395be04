"""The market's one error type, shared by market_node.py, channels.py and api.py."""


class MarketError(ValueError):
    """A request the market cannot act on, naming why (the API answers it as 400 with ``code``)."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail
