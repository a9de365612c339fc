"""The aiohttp application: health, metrics and the admin API."""
