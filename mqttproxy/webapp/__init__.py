"""The HTTP side of the gateway (aiohttp): health today; API, dashboard and metrics attach here."""
